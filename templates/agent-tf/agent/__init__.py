"""A PPO agent that learns online against the contest env (TensorFlow 2 / Keras).

The contest allowed learning during evaluation, and the strongest 2018 entries did exactly
that: start from a policy (random or pretrained on the training levels) and keep improving it on
the test level for the whole one-million-timestep budget. This package is that recipe, small
enough to read in one sitting:

* ``actions``    - the discrete action set per game (the Sonic baselines' 7 combos, or a generic
                   set derived from the buttons);
* ``preprocess`` - downsampling, grayscale, frame stack, reward scaling;
* ``model``      - the CNN policy/value network (Keras);
* ``ppo``        - rollout storage, GAE and the clipped PPO update (compiled with tf.function),
                   checkpoints;
* ``main``       - connect to the env, train until the budget ends, save, exit 0.
"""
