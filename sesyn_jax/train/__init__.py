"""Training, one module per job: the model, optimizer and train state (``state``), the pure
train step (``step``), the run train.py starts (``loop.train_and_evaluate``), its checkpoints
(``checkpoints``) and metrics file (``metrics_writer``), and the start of several processes
with the placement of their batches (``distributed``)."""
