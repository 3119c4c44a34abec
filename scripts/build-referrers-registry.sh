#!/usr/bin/env bash
# build-referrers-registry.sh: build tools/referrers-registry (go-containerregistry's registry with
# the OCI 1.1 referrers API switched on and made conformant) once per version, cached outside the
# work tree, and print the binary's path (see scripts/build-go-tool.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/build-go-tool.sh" referrers-registry github.com/google/go-containerregistry
