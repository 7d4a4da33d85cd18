"""The model's explanation of every batch of a dataset, as every evaluator walks it."""

import torch
from tqdm import tqdm


def eval_batches(model, dataset, device, batch_size: int, progress: bool):
    """(model output, batch) for every batch, in order, in eval mode and without gradients;
    the model's training mode is restored afterwards, even when the caller stops early."""
    was_training = model.training
    model.eval()
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc="evaluate", disable=not progress, leave=False):
                yield model(batch[0].to(device)), batch
    finally:
        model.train(was_training)
