from accounts.selectors import organisation_for_user


def organisation(request):
    return {"current_organisation": organisation_for_user(request.user)}
