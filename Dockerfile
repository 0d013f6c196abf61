# kinema4d-ros on an NVIDIA GPU workstation (CUDA torch; the rest exactly as pinned in requirements/).
# NOTE: written and reviewed, but not built in the development environment (no Docker there);
# see docs/ros.md ("Docker"). The build runs the same scripts as ./run.sh setup
# (scripts/setup_env.sh, then scripts/colcon_build.sh).
#
#   docker build -t kinema4d-ros .
#
# Needs the NVIDIA Container Toolkit. The image sets NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics:
# "graphics" mounts the driver's EGL library (libEGL_nvidia + its glvnd vendor file), which the MuJoCo sim
# world renders with (MUJOCO_GL=egl); without it only CUDA works and the sim world cannot render.
#
# 1. The sim default (loopback discovery, a private domain printed at start), one episode, run folder in ./runs:
#   docker run --rm --gpus all -v $PWD/runs:/opt/kinema4d-ros/runs kinema4d-ros
#   # the real model (weights mounted from the host):
#   docker run --rm --gpus all -v /data:/data -v $PWD/runs:/opt/kinema4d-ros/runs kinema4d-ros \
#       .venv/bin/kinema4d-ros bringup sim --backend kinema4d --base-path /data/Wan2.1-I2V-14B-480P-Diffusers \
#       --checkpoint-path /data/Kinema4D/kinema4d_ckpt
#
# 2. Watching the sim in RViz on the host: share the host's network AND IPC namespace and fix the domain.
#   --network host  the container's loopback is the host's (sim discovery stays on loopback);
#   --ipc host      Fast DDS's shared-memory transport: without it the host's RViz discovers the nodes but
#                   receives no images / clouds (the segments live in the container's /dev/shm);
#   --domain-id N   the sim otherwise picks a random domain; RViz must use the same one.
#   docker run --rm --gpus all --network host --ipc host -v $PWD/runs:/opt/kinema4d-ros/runs kinema4d-ros \
#       .venv/bin/kinema4d-ros bringup sim --domain-id 42 --keep-running
#   # on the host: ROS_DOMAIN_ID=42 ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rviz2 -d config/kinema4d.rviz
#
# 3. Real mode on the lab's graph: host network, the user's domain (nothing network-related is baked into
#    the image; `bringup real` keeps the environment it is given: ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE,
#    ROS_STATIC_PEERS, RMW_IMPLEMENTATION, FASTDDS_DEFAULT_PROFILES_FILE). See docs/ros.md
#    "Deploying on your robot" for the arguments of an FR3 + RealSense or a UR5e.
#   docker run --rm --gpus all --network host --ipc host -e ROS_DOMAIN_ID=$ROS_DOMAIN_ID \
#       -e ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET -v $PWD/calib:/calib -v $PWD/runs:/opt/kinema4d-ros/runs \
#       kinema4d-ros .venv/bin/kinema4d-ros bringup real --calibration /calib/camera.yaml \
#       --joint-name-prefix fr3_:panda_ --gripper-joint-states-topic /franka_gripper/joint_states \
#       --image-topic /camera/color/image_raw --image-transport compressed \
#       --depth-topic /camera/aligned_depth_to_color/image_raw --camera-info-topic /camera/color/camera_info
#   (a lab DDS profile: add -v /etc/lab:/etc/lab -e FASTDDS_DEFAULT_PROFILES_FILE=/etc/lab/fastdds.xml)
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
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
