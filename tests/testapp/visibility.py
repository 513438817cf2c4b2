"""A shop's own rule for what customers may see (VISUAL_SEARCH["VISIBILITY"] names it)."""


def in_stock(model, request):
    return model._default_manager.filter(in_stock=True)
