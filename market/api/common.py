"""REST API of the market: catalogue, sites, nodes, offers, orders, leases.

Thin views: parse with an input serializer, call a service or selector,
render with an output serializer. Others' objects are 404 (selectors only
return the caller's)."""
