# kinema4d-ros on an NVIDIA GPU workstation (CUDA torch; the rest exactly as pinned in requirements/).
# NOTE: written and reviewed, but not built in the development environment (no Docker there);
# see docs/ros.md.
#
#   docker build -t kinema4d-ros .
#   docker run --rm --gpus all --network host -v $PWD/runs:/opt/kinema4d-ros/runs kinema4d-ros
#   docker run --rm --gpus all --network host -v /data:/data kinema4d-ros \
#       .venv/bin/kinema4d-ros bringup sim --backend kinema4d --base-path /data/Wan2.1-I2V-14B-480P-Diffusers \
#       --checkpoint-path /data/Kinema4D/kinema4d_ckpt
#
# Network: `bringup sim` / `replay` set loopback discovery and a private domain themselves (printed
# at start; pass --domain-id N to pick it). Nothing is baked into the image, so real mode joins the
# lab's graph with the user's settings:
#   docker run --rm --gpus all --network host -e ROS_DOMAIN_ID=$ROS_DOMAIN_ID \
#       -e ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET -v $PWD/calib:/calib kinema4d-ros \
#       .venv/bin/kinema4d-ros bringup real --calibration /calib/camera.yaml
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    MUJOCO_GL=egl \
    KINEMA4D_TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128

# Python 3.11 (the ROS 2 Kilted wheels are cp311) from the deadsnakes PPA; cmake + g++ build
# the interface packages; EGL/GL libraries for MuJoCo's renderer; ffmpeg for the videos.
RUN apt-get update && apt-get install -y --no-install-recommends software-properties-common ca-certificates \
    && add-apt-repository -y ppa:deadsnakes/ppa && apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev \
       cmake g++ make git libegl1 libgl1 libgles2 libglib2.0-0 ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/kinema4d-ros
COPY requirements/ requirements/
COPY scripts/ scripts/
COPY pyproject.toml README.md run.sh ./
COPY kinema4d_core/ kinema4d_core/
COPY ros2_ws/ ros2_ws/
COPY third_party/ third_party/
COPY urdf/ urdf/
COPY calibration/ calibration/

# Pinned environment (torch from the CUDA index), editable packages, interface packages.
RUN KINEMA4D_PYTHON=python3.11 scripts/setup_env.sh

# colcon build of ros2_ws (interfaces with ament_cmake from the wheels, kinema4d_ros ament_python).
RUN scripts/colcon_build.sh

COPY . .
CMD [".venv/bin/kinema4d-ros", "bringup", "sim"]
