#!/usr/bin/env bash
# paybridge load benchmark: builds the release gateway and the driver, then runs the driver.
#   bench/run.sh [alipay-create|wechat-notify|wechat-v3-notify|statement|wechat-notify-statement|limits|all] [flags]   (bench/run.sh --help for flags)
set -euo pipefail
cd "$(dirname "$0")/.."
# `--bin` filters every selected package, so both binaries are named.
cargo build --release -p paybridge-server -p paybridge-bench --bin paybridge --bin paybridge-bench
exec "${CARGO_TARGET_DIR:-target}/release/paybridge-bench" "$@"
