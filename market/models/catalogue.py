from decimal import Decimal

from django.db import models
from django.utils.translation import gettext_lazy as _


class GPUModel(models.Model):
    """An accelerator in the catalogue, seeded from market/data/gpu_models.json.

    Figures are the vendor's published dense (no sparsity) peaks; `sources`
    maps each figure to where it was published.
    """

    slug = models.SlugField(max_length=64, unique=True)
    vendor = models.CharField(max_length=40)
    name = models.CharField(max_length=80)
    memory_gb = models.PositiveIntegerField(_("memory (GB)"))
    memory_type = models.CharField(max_length=20, blank=True)
    bf16_tflops = models.DecimalField(
        _("dense BF16 TFLOPS"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    fp16_tflops = models.DecimalField(
        _("dense FP16 TFLOPS"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    fp32_tflops = models.DecimalField(
        _("FP32 TFLOPS"), max_digits=8, decimal_places=2, null=True, blank=True
    )
    interconnect = models.CharField(max_length=80, blank=True)
    tdp_w = models.PositiveIntegerField(null=True, blank=True)
    domestic = models.BooleanField(_("domestic accelerator"), default=False)
    sources = models.JSONField(default=dict, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["vendor", "name"]
        verbose_name = _("GPU model")

    def __str__(self) -> str:
        return f"{self.vendor} {self.name}"

    @property
    def dense_tflops(self) -> Decimal:
        """Dense BF16 TFLOPS, falling back to FP16 where BF16 is unpublished.

        This is the figure behind normalised compute (PFLOPS-hours)."""
        return self.bf16_tflops or self.fp16_tflops or Decimal(0)
