"""Agents from latent actions (Genie paper §3.3, Figure 15).

One concept per module:

- :mod:`~genieworld.agent.envs`: vectorised Procgen CoinRun at the model's frame skip (an SB3 VecEnv
  for the expert's PPO, and one-environment-per-level rollouts for recording and evaluation);
- :mod:`~genieworld.agent.expert`: the expert (stable-baselines3 PPO), stored as safetensors + JSON;
- :mod:`~genieworld.agent.record`: expert episodes into an episode store;
- :mod:`~genieworld.agent.label`: the frozen LAM's latent action for every recorded transition;
- :mod:`~genieworld.agent.policy`: the behavioural-cloning policy and its training;
- :mod:`~genieworld.agent.mapping`: the latent -> real action dictionary D;
- :mod:`~genieworld.agent.evaluate`: rollouts on held-out levels, fraction solved with 95% intervals;
- :mod:`~genieworld.agent.recipe`: the resumable Figure-15 recipe.
"""
