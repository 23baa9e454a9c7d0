module egress/tests/httpget

go 1.19
