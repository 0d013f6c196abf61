"""kinema4d_core: the ROS-free core of kinema4d-ros.

Modules, one job each (frames: ``T_a_b`` maps points expressed in frame ``b`` into frame ``a``;
units are metres and radians throughout):

- ``errors``        exception types that name the bad field and the fix
- ``io``            atomic file/dir output, mp4 writing
- ``mesh``          triangle meshes attached to robot links
- ``robot``         robot configs (urdf/), Pinocchio model, forward kinematics, limits
- ``trajectory``    actions -> joint trajectories (positions, velocities, IK), resampling
- ``twin``          digital-twin meshes from a reconstruction frame (``T_recon_base``)
- ``camera``        pinhole + distortion camera model, calibration YAML
- ``render``        z-buffered rasterizer: robot pointmap, depth, mask, link id, RGB
- ``conditioning``  normalization, pseudo-RGB encoding, latent-grid masks
- ``projection``    trajectory -> robot pointmap sequence (the ``kinema4d project`` job)
- ``types``         GenerationRequest, Cancelled, Backend protocol (shared by backends/model/service)
- ``model``         the Kinema4D transformer + pipeline on diffusers, checkpoints, tiny preset
- ``registry``      the backend registry (BackendSpec): names, options, loaders, baselines
- ``backends``      generation backends (kinema4d, kinema4d-tiny, static-scene baseline)
- ``service``       simulate_episode: the one ROS-free "simulate an episode" path
- ``resources``     per-process cache of robots, calibrations, backends and bags
- ``metric``        metric recovery of generated pointmaps
- ``rollout``       rollout.npz / mp4 / PLY outputs
- ``calibration``   hand-eye, PnP, mesh alignment, overlay scoring
- ``simworld``      the MuJoCo simulated lab
- ``bags``, ``evaluation``, ``metrics``, ``viewer``  offline replay and policy evaluation
- ``batch``, ``statistics``, ``plots``  resumable batch runner, success-rate statistics, PNG plots
"""

__version__ = "0.1.0"
