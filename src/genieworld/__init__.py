"""genieworld: Genie (Bruce et al., ICML 2024) in PyTorch.

    from genieworld import Genie
    genie = Genie.from_pretrained("runs/world/model")
    world = genie.world("screenshot.png", seed=0)
    frame = world.step(3)            # HxWx3 uint8
"""

__version__ = "0.1.0"

__all__ = ["Genie", "GenieEnv", "__version__"]


def __getattr__(name):  # lazy: keep `import genieworld` cheap
    if name == "Genie":
        from genieworld.genie import Genie

        return Genie
    if name == "GenieEnv":
        from genieworld.env import GenieEnv

        return GenieEnv
    raise AttributeError(name)
