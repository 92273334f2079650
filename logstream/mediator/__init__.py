"""The mediator: membership and leases, placement, ownership and hand-off, batched forwarding."""
