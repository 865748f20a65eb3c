"""``enrollments product create|list|show|migrate``: the plan products enrollments are made of (in the database),
and moving enrollments to a product's latest plan version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from adapters.domain import Product, ProductType
from adapters.lifecycle import ChangeWhen
from adapters.validation import describe_validation_error
from starter.cli.errors import EXIT_RUNTIME, CliError
from starter.cli.execution import JsonOption, echo_json, with_client, with_store
from starter.cli.output import echo_lines, table
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


@product_app.command("migrate")
def product_migrate(
    ctx: typer.Context,
    product_id: Annotated[str, typer.Argument(help="The product whose enrollments move to its latest plan version.")],
    when_: Annotated[
        str,
        typer.Option("--when", help="period-end (default) | now (no proration: the new price from the next period)."),
    ] = "period-end",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="How many would move, and next order totals before and after for a sample."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Move a product's open enrollments to its latest plan version (editing a plan never moves them silently)."""
    moments = {"period-end": ChangeWhen.PERIOD_END, "now": ChangeWhen.NOW}
    moment = moments.get(when_.strip().casefold().replace("_", "-"))
    if moment is None:
        raise CliError(f"--when: {when_!r} is not one of period-end, now")
    migration = with_client(ctx, lambda client: client.migrate_product(product_id, when=moment, dry_run=dry_run))
    if as_json:
        echo_json(migration.model_dump(mode="json"))
        return
    verb = "would move" if dry_run else "moved"
    done = migration.enrollments if dry_run else len(migration.migrated)
    lines = [f"{verb} {done} of {migration.enrollments} enrollment(s) to {product_id} version {migration.version}"]
    for sample in migration.samples:
        before = "—" if sample.total_before is None else str(sample.total_before)
        after = "—" if sample.total_after is None else str(sample.total_after)
        lines.append(f"  {sample.enrollment_id} (version {sample.plan_version}): next order {before} → {after}")
    lines += [f"  refused {enrollment_id}: {why}" for enrollment_id, why in migration.refused.items()]
    echo_lines(lines)
