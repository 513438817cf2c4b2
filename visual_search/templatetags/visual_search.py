"""``{% load visual_search %}``: the search-by-photo widget and similar products.

Thin wrappers: the work is in :mod:`visual_search.widget` and :func:`visual_search.results.similar_items`.
"""

from __future__ import annotations

from django import template
from django.template.library import parse_bits
from django.template.loader import render_to_string

from ..results import similar_items
from ..widget import match_percent, widget_context

register = template.Library()


@register.inclusion_tag("visual_search/widget.html", takes_context=True)
def visual_search_widget(context, **options):
    """``{% visual_search_widget camera=True limit=12 category=category.slug %}``: see :func:`widget_context`."""
    return widget_context(context, **options)


@register.filter
def vs_match(score):
    """``{{ item.score|vs_match }}``: "87% match", in the active language; nothing for no score."""
    try:
        return match_percent(score)
    except (TypeError, ValueError):
        return ""


class SimilarProductsNode(template.Node):
    def __init__(self, args, kwargs, target_var):
        self.args, self.kwargs, self.target_var = args, kwargs, target_var

    def render(self, context):
        args = [arg.resolve(context) for arg in self.args]
        kwargs = {key: value.resolve(context) for key, value in self.kwargs.items()}
        template_name = kwargs.pop("template", None) or "visual_search/similar_products.html"
        if len(args) > 3:  # positional template
            template_name = args.pop()
        items = similar_items(*args, request=context.get("request"), **kwargs)
        if self.target_var:
            context[self.target_var] = items
            return ""
        return render_to_string(template_name, {"items": items, "object": args[0] if args else None, "request": context.get("request")})


@register.tag
def similar_products(parser, token):
    """Objects that look like ``obj``, rendered server-side; an error or no embedding renders nothing.

    ``{% similar_products product limit=4 queryset=in_stock %}`` renders
    ``visual_search/similar_products.html``; ``{% similar_products product limit=4 as similar %}``
    puts the list of result dicts (object, id, name, url, image_url, score) in ``similar``.
    """
    bits = token.split_contents()[1:]
    target_var = None
    if len(bits) >= 2 and bits[-2] == "as":
        target_var = bits[-1]
        bits = bits[:-2]
    args, kwargs = parse_bits(
        parser, bits, params=["obj", "limit", "queryset", "template"], varargs=None, varkw=None,
        defaults=(4, None, None), kwonly=[], kwonly_defaults=None, takes_context=False, name="similar_products",
    )
    return SimilarProductsNode(args, kwargs, target_var)
