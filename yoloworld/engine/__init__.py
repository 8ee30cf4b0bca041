"""Training engine.

  loss, assigner, iou   the YOLOv8 / YOLO-World loss with task-aligned assignment
  train_config          TrainConfig (typed sections) from YAML recipes + key=value overrides
  modes                 the model per fine-tuning mode (normal, efficient, prompt, rep)
  optim, ema            official parameter groups, warmup + linear decay, exp-momentum EMA
  trainer               the loop (AMP, clipping, NaN guard, validation, checkpoints, resume, DDP)
  batches, validate     data -> model inputs; COCO AP during training
  state, run_weights    atomic resume state; the run's official-layout weight files and deployable copy
  feedback, run_summary progress bar, scalars.jsonl, TensorBoard; curves and best-epoch summary

Entry point: `yoloworld train RECIPE key=value ...` or `yoloworld.engine.trainer.train(config)`.
"""
