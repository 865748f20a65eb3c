"""``enrollments product create|list|show``: the plan products enrollments are made of (in the database)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from adapters.domain import Product, ProductType
from adapters.validation import describe_validation_error
from starter.cli.errors import EXIT_RUNTIME, CliError
from starter.cli.execution import JsonOption, echo_json, with_store
from starter.cli.output import table
from starter.cli.parsing import choice, parse_plan

product_app = typer.Typer(name="product", help="Plan products enrollments are made of (in the database).")


def register(app: typer.Typer) -> None:
    app.add_typer(product_app)


def _product_json(product: Product) -> dict[str, Any]:
    return product.model_dump(mode="json")


def _plan_text(product: Product) -> str:
    plan = product.plan
    if plan is None:
        return "—"
    text = f"{plan.usage_calculation_type} every {plan.billing_interval_count} {plan.billing_interval}"
    if plan.has_trial:
        text += f", trial {plan.trial_interval_count} {plan.trial_interval}"
    return text


@product_app.command("create")
def product_create(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Option("--id", help="Product id.", show_default=False)],
    plan: Annotated[
        str | None,
        typer.Option("--plan", help='The plan as JSON, e.g. \'{"billing_interval": "MONTHS"}\'.', show_default=False),
    ] = None,
    product_type: Annotated[
        ProductType,
        typer.Option("--type", parser=choice(ProductType), help="Product type."),
    ] = ProductType.PLAN_PRODUCT,
    title: Annotated[str | None, typer.Option("--title", help="Human title.")] = None,
    price_amount: Annotated[int | None, typer.Option("--price-amount", min=0, help="Price in minor units.")] = None,
    price_currency: Annotated[str | None, typer.Option("--price-currency", help="ISO 4217 code, e.g. CHF.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a product, or replace the one with the same id."""
    try:
        product = Product(
            id=product_id,
            type=product_type,
            plan=None if plan is None else parse_plan(plan),
            title=title,
            price_amount=price_amount,
            price_currency=price_currency,
        )
    except ValidationError as error:
        raise CliError(describe_validation_error(error)) from error
    saved = with_store(ctx, lambda store: store.products.upsert(product, now=datetime.now(UTC)))
    if as_json:
        echo_json(_product_json(saved))
    else:
        typer.echo(f"product {saved.id} saved: {_plan_text(saved)}")


@product_app.command("list")
def product_list(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """List every product."""
    products = with_store(ctx, lambda store: store.products.all())
    if as_json:
        echo_json([_product_json(product) for product in products])
    elif not products:
        typer.echo("no products (add one with `enrollments product create`)")
    else:
        rows = [[product.id, str(product.type), _plan_text(product), product.title or ""] for product in products]
        typer.echo(table(["ID", "TYPE", "PLAN", "TITLE"], rows))


@product_app.command("show")
def product_show(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Argument(help="The product id.", show_default=False)],
    as_json: JsonOption = False,
) -> None:
    """Show one product."""
    product = with_store(ctx, lambda store: store.products.get(product_id))
    if product is None:
        raise CliError(f"product {product_id!r} not found", EXIT_RUNTIME)
    if as_json:
        echo_json(_product_json(product))
        return
    price = "—"
    if product.price_amount is not None:
        price = f"{product.price_amount} {product.price_currency or ''}".strip()
    typer.echo(
        table(
            ["FIELD", "VALUE"],
            [
                ["id", product.id],
                ["type", str(product.type)],
                ["plan", _plan_text(product)],
                ["title", product.title or "—"],
                ["price", price],
            ],
        )
    )
