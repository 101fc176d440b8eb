"""API: the GPU catalogue (public)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from market import selectors as search
from market.models import GPUModel


class GPUModelOutput(serializers.ModelSerializer):
    dense_tflops = serializers.DecimalField(max_digits=8, decimal_places=2, read_only=True)

    class Meta:
        model = GPUModel
        fields = [
            "slug",
            "vendor",
            "name",
            "memory_gb",
            "memory_type",
            "bf16_tflops",
            "fp16_tflops",
            "fp32_tflops",
            "dense_tflops",
            "interconnect",
            "tdp_w",
            "domestic",
            "sources",
            "notes",
        ]


class GPUModelListView(ListAPIView):
    """The GPU catalogue with published figures and their sources."""

    permission_classes = [AllowAny]
    serializer_class = GPUModelOutput

    def get_queryset(self):
        return search.gpu_models()


class GPUModelDetailView(APIView):
    permission_classes = [AllowAny]

    @extend_schema(responses=GPUModelOutput)
    def get(self, request, slug: str):
        return Response(GPUModelOutput(get_object_or_404(search.gpu_models(), slug=slug)).data)
