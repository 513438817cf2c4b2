"""``{% load visual_search %}``: the search-by-photo widget and similar products.

Thin wrappers: the work is in :mod:`visual_search.widget` and :func:`visual_search.results.similar_items`.
"""

from __future__ import annotations

from collections.abc import Mapping

from django import template
from django.template.loader import render_to_string

from ..results import similar_items
from ..widget import (
    PAGE_STATE, csrf_cookie_name, match_percent, page_language, page_state, price_text, script_tag, stylesheet_link, widget_context, words_language,
    written_price,
)

register = template.Library()


@register.inclusion_tag("visual_search/widget.html", takes_context=True)
def visual_search_widget(context, **options):
    """``{% visual_search_widget camera=True limit=12 category=category.slug %}``: see :func:`widget_context`."""
    return widget_context(context, **options)


@register.simple_tag(takes_context=True)
def visual_search_stylesheet(context):
    """``{% visual_search_stylesheet %}``: links widget.css the first time on a page, nothing after.
    The widget and the similar products list write it; a layout may write it in its ``<head>``."""
    return stylesheet_link(context)


@register.simple_tag(takes_context=True)
def visual_search_script(context):
    """``{% visual_search_script %}``: links widget.js the first time on a page, nothing after.
    Each widget writes it; a layout may write it once for the page (a widget in a ``{% cache %}``)."""
    return script_tag(context)


@register.filter
def vs_match(score):
    """``{{ item.score|vs_match }}``: "87% match", in the active language; nothing for no score."""
    try:
        return match_percent(score)
    except (TypeError, ValueError):
        return ""


@register.filter
def vs_price(price, currency=None):
    """``{{ item|vs_price }}``: a result's price as the script's cards write it, with the decimals
    of its ``currency`` (see ``price_text``: "1,200" for JPY; two without one). A price alone
    (``{{ product.price|vs_price:"JPY" }}``, ``{{ item.price|vs_price }}``) takes the currency given,
    or none: a result may have no ``currency`` key, which Django refuses as a filter's argument."""
    if isinstance(price, Mapping):
        return price_text(price.get("price"), price.get("currency"))
    return price_text(price, currency)


@register.filter
def vs_written_price(item):
    """``{{ item|vs_written_price }}``: a result's price as every card writes it, currency included
    (``written_price``: the adapter's ``price_display``, "€3.10" for Oscar, else "3.10 EUR")."""
    return written_price(item) if isinstance(item, Mapping) else ""


class SimilarProductsNode(template.Node):
    def __init__(self, args, kwargs, target_var):
        self.args, self.kwargs, self.target_var = args, kwargs, target_var

    def render(self, context):
        # Positional arguments by PARAMS' order, then the keyword ones (the parser allows no overlap).
        values = dict(zip(PARAMS, (arg.resolve(context) for arg in self.args)))
        values.update((key, value.resolve(context)) for key, value in self.kwargs.items())
        obj = values.pop("obj")
        template_name = values.pop("template", None) or "visual_search/similar_products.html"
        heading = values.pop("heading", True)
        items = similar_items(obj, request=context.get("request"), **values)
        if self.target_var:
            context[self.target_var] = items
            return ""
        # Look-alikes of a product have no photo to be "the product in": their cards show no "% match".
        # Its heading's id, unique on the page: a product page may show two of these lists.
        request = context.get("request")
        holder = request.__dict__ if request is not None else context.render_context
        count = holder["_visual_search_similar_lists"] = holder.get("_visual_search_similar_lists", 0) + 1
        title_id = "vs-similar-title" if count == 1 else f"vs-similar-title-{count}"
        context_data = {
            "items": items, "object": obj, "request": request, "show_score": False, "title_id": title_id,
            "heading": bool(heading),
            # The heading's words in their language (English on a Spanish page: the package has no
            # Spanish), the shop's names and prices in the page's (WCAG 3.1.2, language of parts).
            "words_language": words_language(), "page_language": page_language(),
            # The page's CSRF token, for a card with a form (Oscar's basket button): without it the
            # form's {% csrf_token %} wrote nothing, and the shop answered the button with 403.
            "csrf_token": context.get("csrf_token"),
            # In a {% cache %} fragment that token is the first visitor's: widget.js puts the
            # visitor's own, read from this cookie, in such a form as it is sent (data-vs-fresh-csrf).
            "csrf_cookie": csrf_cookie_name(),
            # For {% visual_search_stylesheet %}: widget.css is linked once on a page (none rendering without a request).
            PAGE_STATE: page_state(context),
        }
        return render_to_string(template_name, context_data)


# {% similar_products %}'s arguments, in order (similar_items has the defaults).
PARAMS = ("obj", "limit", "queryset", "template", "heading")


def parse_arguments(parser, bits: list[str], name: str = "similar_products"):
    """Positional then ``key=value`` arguments of a tag, each compiled as a filter expression; the
    errors name the tag, as Django's simple tags do. (Not ``django.template.library.parse_bits``:
    private, and its signature changed in Django 6.)"""
    args, kwargs = [], {}
    for bit in bits:
        key, equals, value = bit.partition("=")
        if equals and key.isidentifier():
            if key not in PARAMS:
                raise template.TemplateSyntaxError(f"'{name}' received unexpected keyword argument '{key}'")
            if key in kwargs or PARAMS.index(key) < len(args):
                raise template.TemplateSyntaxError(f"'{name}' received multiple values for keyword argument '{key}'")
            kwargs[key] = parser.compile_filter(value)
        elif kwargs:
            raise template.TemplateSyntaxError(f"'{name}' received some positional argument(s) after some keyword argument(s)")
        else:
            args.append(parser.compile_filter(bit))
    if len(args) > len(PARAMS):
        raise template.TemplateSyntaxError(f"'{name}' received too many positional arguments")
    if not args and "obj" not in kwargs:
        raise template.TemplateSyntaxError(f"'{name}' did not receive value(s) for the argument(s): 'obj'")
    return args, kwargs


@register.tag
def similar_products(parser, token):
    """Objects that look like ``obj``, rendered server-side; an error or no embedding renders nothing.

    ``{% similar_products product limit=4 queryset=in_stock %}`` renders
    ``visual_search/similar_products.html`` (``heading=False``: without its "Similar products"
    heading, for a page that has one); ``{% similar_products product limit=4 as similar %}``
    puts the list of result dicts (object, id, name, url, image_url, score, similarity, probability,
    then the adapter's extra fields) in ``similar``.
    """
    bits = token.split_contents()[1:]
    target_var = None
    if len(bits) >= 2 and bits[-2] == "as":
        target_var = bits[-1]
        bits = bits[:-2]
    args, kwargs = parse_arguments(parser, bits)
    return SimilarProductsNode(args, kwargs, target_var)
