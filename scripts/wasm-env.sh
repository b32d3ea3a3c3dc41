# Source this before building for wasm32 (trunk, cargo --target wasm32-unknown-unknown).
# Where rustup's wasm32 target is installed nothing changes; otherwise it selects Debian's
# rustc-web toolchain, which builds the standard library for wasm32 from source (see
# scripts/setup.sh and the README's "How the wasm build works here").
# PP_WASM_ROUTE=debian forces the Debian route (to test it on a machine that has both).
if [ "${PP_WASM_ROUTE:-}" = debian ] || ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  export PATH="/usr/bin:$PATH"
  export RUSTC_BOOTSTRAP=1
  export CARGO_UNSTABLE_BUILD_STD=std,panic_abort
fi
