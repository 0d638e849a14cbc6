"""Browser and HTTP tests of the support console (`sfsync web`)."""
