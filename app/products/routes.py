from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth.dependencies import CurrentApiKey, require_api_key
from app.core.db import DbSession
from app.core.errors import API_ERRORS, ErrorBody
from app.core.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from app.core.params import STRICT_QUERY
from app.products import service
from app.products.schemas import ProductPage, ProductRead
from app.trackstar.schemas import MAX_ID_LENGTH

router = APIRouter(
    prefix="/api/v1",
    responses=API_ERRORS,
    tags=["products"],
    dependencies=[require_api_key, STRICT_QUERY],
)

# Ids are compared with stored text, which never holds NUL (Postgres text cannot).
ProductId = Annotated[str, Path(max_length=MAX_ID_LENGTH)]


@router.get("/products")
async def list_products(
    session: DbSession,
    caller: CurrentApiKey,
    sku: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    connection_id: Annotated[str | None, Query(max_length=MAX_ID_LENGTH)] = None,
    variants_only: Annotated[
        bool, Query(description="Leave out parent products.")
    ] = False,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> ProductPage:
    """List products and variants, oldest change first, with cursor pagination."""
    filters = service.ProductFilters(
        scope=caller.scope,
        sku=sku,
        connection_id=connection_id,
        variants_only=variants_only,
    )
    products, next_cursor = await service.list_products(
        session, filters=filters, limit=limit, cursor=cursor
    )
    data = [ProductRead.model_validate(product) for product in products]
    return ProductPage(data=data, next_cursor=next_cursor)


@router.get(
    "/products/{product_id}",
    responses={404: {"model": ErrorBody, "description": "No such product"}},
)
async def get_product(
    session: DbSession, caller: CurrentApiKey, product_id: ProductId
) -> ProductRead:
    """Get one product or variant with its inventory per warehouse."""
    product = await service.get_product(session, product_id, scope=caller.scope)
    return ProductRead.model_validate(product)
