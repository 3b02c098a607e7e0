#!/usr/bin/env bash
# Install (once) the Debian packages the UI tests and the headless editor need:
# Mesa's software Vulkan (lavapipe) for wgpu, Xvfb for a virtual display, and the X11
# client libraries winit loads at run time. Nothing here is needed to build.
set -euo pipefail
packages=(mesa-vulkan-drivers libvulkan1 xvfb xauth libx11-6 libx11-xcb1 libxcursor1 libxi6 libxrandr2 libxkbcommon-x11-0)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "ensure-system: installing ${missing[*]}" >&2
sudo=""
if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
$sudo apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
