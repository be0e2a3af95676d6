#!/usr/bin/env bash
# SDK acceptance check: Microsoft's azure-mgmt-compute and azure-mgmt-network against the emulator.
#
# Creates a throwaway virtualenv (reused if present), then runs the integration test
# `emulator::behaviour::microsoft_python_sdk_accepts_the_emulator`, which starts the emulator in-process on
# 127.0.0.1:0 and runs tests/sdk/check_sdk.py against it.
#
# .ci/run creates the same virtualenv and sets AZSSH_SDK_PYTHON for the whole `cargo test`.
#
# To check a standalone `azssh emulator` instead (once the command and the guest model are wired
# in; without a guest the WindowsOpenSSH extension ends `Failed`, as it says):
#   azssh emulator --port 0 --speed 100 > /tmp/emu.env & sleep 1; . /tmp/emu.env
#   "$VENV/bin/python" tests/sdk/check_sdk.py
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${AZSSH_SDK_VENV:-${TMPDIR:-/tmp}/azssh-sdkvenv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import azure.mgmt.compute, azure.mgmt.network' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet azure-mgmt-compute azure-mgmt-network azure-core
fi
AZSSH_SDK_PYTHON="$VENV/bin/python" cargo test --test integration microsoft_python_sdk_accepts_the_emulator -- --nocapture
