module stellaops.dev/tools/probe

go 1.26
