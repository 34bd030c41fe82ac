"""Which Trackstar events change which records.

Every resource event is an upsert of the full record, so "updated" before
"created" simply creates, and an older snapshot is skipped as stale. Our own
writes to Trackstar come back as these same events and land as upserts too.
"""

from app.sync.resources import RESOURCES, Resource, ResourceSpec

ORDER = RESOURCES[Resource.ORDERS]
PRODUCT = RESOURCES[Resource.PRODUCTS]
WAREHOUSE = RESOURCES[Resource.WAREHOUSES]

HISTORICAL_SYNC_COMPLETED = "connection.historical-sync-completed"

# `data.resource` of a historical-sync event, as Trackstar may spell it.
HISTORICAL_RESOURCES = {
    "orders": Resource.ORDERS,
    "order": Resource.ORDERS,
    "get_orders": Resource.ORDERS,
    "products": Resource.PRODUCTS,
    "product": Resource.PRODUCTS,
    "get_products": Resource.PRODUCTS,
    "inventory": Resource.PRODUCTS,
    "get_inventory": Resource.PRODUCTS,
    "warehouses": Resource.WAREHOUSES,
    "warehouse": Resource.WAREHOUSES,
    "get_warehouses": Resource.WAREHOUSES,
}

HANDLERS: dict[str, ResourceSpec] = {
    "cart-order.created": ORDER,
    "cart-order.updated": ORDER,
    "cart-order.cart-shipment.created": ORDER,
    # The same event under the name one fulfilment guide uses.
    "cart-order.shipment.created": ORDER,
    "cart-product.created": PRODUCT,
    "cart-product.updated": PRODUCT,
    "cart-warehouse.created": WAREHOUSE,
    "cart-warehouse.updated": WAREHOUSE,
}
