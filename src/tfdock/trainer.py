"""The trainer: what one training step and one evaluation do, compiled, on every replica.

It knows nothing of epochs, checkpoints or run dirs (train.py drives it, as TF orbit's controller drives
its trainer): gradients, the loss and its label smoothing, dynamic loss scaling decided across replicas,
the per-replica steps, several steps per call, and the distributed evaluation.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfdock import runtime


class Trainer:
    """The compiled pieces of the loop: distributed train steps and a distributed evaluation.

    `label_smoothing` applies to the training loss only; evaluation always reports plain cross-entropy.
    """

    def __init__(
        self,
        model: keras.Model,
        optimizer: keras.optimizers.Optimizer,
        env: runtime.Runtime,
        label_smoothing: float = 0.0,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.strategy = env.strategy
        with self.strategy.scope():
            # Create the slot variables now: created lazily inside the replicated step, they break Mirrored.
            optimizer.build(model.trainable_variables)
            # (loss sum, correct, count) since the last take_train_metrics: each replica adds its own, and
            # reading sums them, so the replicas reduce once per epoch instead of three times per step.
            self._train_totals = tf.Variable(
                tf.zeros(3),
                trainable=False,
                synchronization=tf.VariableSynchronization.ON_READ,
                aggregation=tf.VariableAggregation.SUM,
            )
        self.loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
        self.label_smoothing = label_smoothing
        # Keras's sparse loss has no label smoothing: the training loss takes one-hot labels instead.
        self.smoothed_loss_fn = keras.losses.CategoricalCrossentropy(
            label_smoothing=label_smoothing, reduction=None
        )
        # With one replica XLA compiles the whole step, apply included; with several, only the per-replica
        # maths: the all-reduce and apply stay outside it (XLA on CPUs cannot hold the apply's merge_call).
        self.compiles_whole_step = env.jit_compile and env.replicas == 1 and not env.loss_scaled
        self._gradients = tf.function(
            self._gradients_fn, jit_compile=env.jit_compile and not self.compiles_whole_step
        )
        self._replica_step = (
            tf.function(self._replica_step_fn, jit_compile=True)
            if self.compiles_whole_step
            else self._replica_step_fn
        )
        self._train_step = tf.function(self._step)
        self._train_steps = tf.function(self._train_steps_fn)
        self._next_step = tf.function(self._next_step_fn)
        self._eval_step = tf.function(self._eval_step_fn)

    @property
    def loss_scale(self) -> keras.optimizers.LossScaleOptimizer | None:
        return self.optimizer if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer) else None

    def _sums(
        self, labels: tf.Tensor, probabilities: tf.Tensor, training: bool = False
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        if training and self.label_smoothing:
            classes = tf.shape(probabilities)[-1]
            one_hot = tf.one_hot(tf.cast(labels, tf.int32), classes, dtype=probabilities.dtype)
            losses = self.smoothed_loss_fn(one_hot, probabilities)
        else:
            losses = self.loss_fn(labels, probabilities)
        correct = tf.cast(tf.argmax(probabilities, axis=-1) == tf.cast(labels, tf.int64), tf.float32)
        return tf.reduce_sum(losses), tf.reduce_sum(correct), tf.cast(tf.size(labels), tf.float32)

    def _gradients_fn(self, images: tf.Tensor, labels: tf.Tensor) -> tuple[Any, tf.Tensor]:
        """The gradients (times the loss scale, when there is one) and this replica's (loss sum, correct,
        count)."""
        global_batch = tf.cast(tf.size(labels), tf.float32) * self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            probabilities = self.model(images, training=True)
            loss_sum, correct, count = self._sums(labels, probabilities, training=True)
            loss = loss_sum / global_batch  # so that summing gradients over replicas averages them
            if self.loss_scale:
                loss = self.loss_scale.scale_loss(loss)
        gradients = tape.gradient(loss, self.model.trainable_variables)
        return gradients, tf.stack([loss_sum, correct, count])

    def _next_step_fn(self, batches: Any) -> None:
        self._step(*next(batches))

    def _train_steps_fn(self, batches: Any, steps: tf.Tensor) -> None:
        for _ in tf.range(steps):
            self._next_step_fn(batches)

    def _step(self, images: Any, labels: Any) -> None:
        if self.loss_scale:
            self._loss_scaled_step(images, labels)
        else:
            self.strategy.run(self._replica_step, args=(images, labels))

    def _replica_step_fn(self, images: tf.Tensor, labels: tf.Tensor) -> None:
        gradients, totals = self._gradients(images, labels)
        self.optimizer.apply_gradients(zip(gradients, self.model.trainable_variables, strict=True))
        self._train_totals.assign_add(totals)

    def _loss_scaled_step(self, images: Any, labels: Any) -> None:
        """Dynamic loss scaling as LossScaleOptimizer does it (unscale and apply when every gradient is
        finite, and double the scale after `dynamic_growth_steps` such steps; else skip the step and halve
        the scale), with one difference: "finite" is decided over the gradients of EVERY replica. Keras 3.15
        decides it from the first replica's own gradients before they are summed, so an overflow on another
        replica applied inf to the weights (Mirrored) or left one worker all-reducing alone (multi-worker)."""
        scaler = self.loss_scale
        assert scaler is not None

        def replica_gradients(images: tf.Tensor, labels: tf.Tensor) -> tuple[Any, tf.Tensor]:
            gradients, totals = self._gradients(images, labels)
            self._train_totals.assign_add(totals)
            finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
            return gradients, tf.cast(tf.logical_not(finite), tf.float32)

        gradients, overflowed = self.strategy.run(replica_gradients, args=(images, labels))
        # Summed over the replicas of every worker: all of them take the same branch below.
        overflows = self.strategy.reduce(tf.distribute.ReduceOp.SUM, overflowed, axis=None)

        def apply_unscaled() -> None:
            scale = tf.convert_to_tensor(scaler.dynamic_scale)

            def replica_apply(gradients: list[tf.Tensor]) -> None:
                unscaled = [gradient / scale for gradient in gradients]
                scaler.inner_optimizer.apply_gradients(
                    zip(unscaled, self.model.trainable_variables, strict=True)
                )

            self.strategy.run(replica_apply, args=(gradients,))
            counter = tf.convert_to_tensor(scaler.step_counter)
            grow = counter >= scaler.dynamic_growth_steps - 1
            scaler.step_counter.assign(tf.where(grow, tf.zeros_like(counter), counter + 1))
            scaler.dynamic_scale.assign(tf.where(grow, scale * 2, scale))

        def skip() -> None:
            scaler.step_counter.assign(tf.zeros_like(scaler.step_counter))
            scaler.dynamic_scale.assign(scaler.dynamic_scale * 0.5)

        # In cross-replica context: a cond in replica context may not hold the apply's merge_call.
        tf.cond(overflows == 0, apply_unscaled, skip)

    def _eval_step_fn(self, images: Any, labels: Any) -> tuple[tf.Tensor, ...]:
        def replica_step(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
            return self._sums(labels, self.model(images, training=False))

        per_replica = self.strategy.run(replica_step, args=(images, labels))
        return tuple(
            self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica
        )

    def distribute(self, dataset: tf.data.Dataset) -> Any:
        return self.strategy.experimental_distribute_dataset(dataset)

    def train_step(self, batch: Any) -> None:
        """One training step on one distributed batch."""
        self._train_step(*batch)

    def train_steps(self, batches: Any, steps: int) -> None:
        """The next `steps` training steps, on batches from `batches` (an iterator over `distribute`)."""
        if steps == 1:
            # A straight function, as fit's: the while loop of one iteration trained 1.7-3.3% fewer
            # images/s (docs/recipe.md). The same weights either way.
            self._next_step(batches)
        else:
            self._train_steps(batches, tf.constant(steps, tf.int64))

    def take_train_metrics(self) -> tuple[float, float]:
        """(loss, accuracy) over the steps since the last call."""
        loss, accuracy = self.peek_train_metrics()
        self._train_totals.assign(tf.zeros(3))
        return loss, accuracy

    def peek_train_metrics(self) -> tuple[float, float]:
        """(loss, accuracy) so far, left counting. Reading sums the replicas: under MultiWorkerMirrored
        that is a collective, which every worker must call alike (never on a timer)."""
        loss_sum, correct, count = self._train_totals.read_value().numpy()
        return float(loss_sum / count), float(correct / count)

    def evaluate(self, dataset: tf.data.Dataset) -> tuple[float, float]:
        """(mean loss, accuracy) of the model being trained over a whole dataset."""
        totals = np.zeros(3)
        for batch in self.distribute(dataset):
            totals += [float(value) for value in self._eval_step(*batch)]
        loss_sum, correct, count = totals
        return loss_sum / count, correct / count
