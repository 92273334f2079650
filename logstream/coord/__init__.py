"""etcd mode (issue 12): key ownership and membership kept in etcd; the protocol is pure, the adapter does the I/O."""
