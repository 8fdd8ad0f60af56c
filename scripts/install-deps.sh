#!/usr/bin/env bash
# Installs what the full test suite needs and a fresh machine may lack:
# redis-server (Redis backend tests), openssl (certificates for the TLS
# tests), clang/libclang (RocksDB's C++ build), postgresql (initdb and
# pg_ctl for the private servers of the PostgreSQL tests) and e2fsprogs
# (an ext4 image turned read-only under an open store).
set -euo pipefail

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v clang >/dev/null 2>&1 || missing+=(clang)
# The read-only-mid-life tests make an ext4 image (mkfs.ext4, e2fsck).
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
# PostgreSQL tests start a private server with initdb + pg_ctl.
command -v initdb >/dev/null 2>&1 \
  || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null \
  || missing+=(postgresql)
# bindgen (clang-sys) loads the unversioned `libclang.so` / `libclang-N.so`
# that only libclang-dev installs; `libclang-cpp.so.N` or `libclang.so.1`
# alone do not count.
compgen -G "/usr/lib/llvm-*/lib/libclang.so" >/dev/null \
  || compgen -G "/usr/lib/*/libclang-*.so" >/dev/null \
  || compgen -G "/usr/lib/*/libclang.so" >/dev/null \
  || missing+=(libclang-dev)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing packages: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
