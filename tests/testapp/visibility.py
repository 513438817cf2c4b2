"""A shop's own rule for what customers may see (VISUAL_SEARCH["VISIBILITY"] names it)."""


def in_stock(model, request):
    return model._default_manager.filter(in_stock=True)


def takes_a_queryset(queryset, request):
    """A shop's mistake: the rule is given the model, not a queryset."""
    return queryset.filter(in_stock=True)


def forgets_to_return(model, request):
    model._default_manager.filter(in_stock=True)


def one_argument(model):
    return model._default_manager.all()


def with_gallery(model, request):
    """Products with a gallery photo: a join, one row per photo until .distinct()."""
    return model._default_manager.filter(images__isnull=False)
