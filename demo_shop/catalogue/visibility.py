"""What customers may see: the shop's pages and visual search (VISUAL_SEARCH["VISIBILITY"]) share it."""


def browsable(model, request):
    """Published products only (``is_public``), whoever asks."""
    return model._default_manager.filter(is_public=True)
