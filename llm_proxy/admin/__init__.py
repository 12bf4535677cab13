"""The admin plane: the admin API under /admin/v1, behind the admin keys. It adds nothing to
the proxy's request path: its routes live in a sub-application with its own guard, and its
database connections are opened on its first use."""
