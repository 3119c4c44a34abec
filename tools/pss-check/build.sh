#!/usr/bin/env bash
# build.sh: build tools/pss-check (the Pod Security Standards checker over the Kubernetes admission
# code, k8s.io/pod-security-admission) once per version, cached outside the work tree, and print
# the binary's path (see scripts/build-go-tool.sh).
exec bash "$(dirname "${BASH_SOURCE[0]}")/../../scripts/build-go-tool.sh" pss-check k8s.io/pod-security-admission
