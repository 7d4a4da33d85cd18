"""Prediction heads: many small MLPs evaluated as one batched computation.

The method owns one MLP per (layer, sprite, transformation module). Building them as
hundreds of `nn.Linear` modules costs a kernel launch per head and an optimiser update per
tensor; stacking the weights of all copies of a module into one tensor with a leading
"head" dimension computes them in three matrix products and keeps row `i` of every tensor
the parameters of head `i` (which is what empty-cluster reassignment copies).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from .batch_norm import across_ranks, global_batch_norm

HIDDEN = 128


class HeadBank(nn.Module):
    """`n_heads` MLPs Linear(F,128)-[BN]-ReLU-(Linear(128,128)-ReLU)x(n_hidden-1)-Linear(128,d).

    The last layer is zero-initialised so that every head starts by predicting β = 0, the
    identity of its transformation.
    """

    def __init__(
        self, n_heads: int, in_features: int, out_features: int, n_hidden_layers: int = 2, norm_layer: str | None = None
    ):
        super().__init__()
        self.n_heads, self.out_features = n_heads, out_features
        self.first_weight = nn.Parameter(torch.empty(n_heads, in_features, HIDDEN))
        self.first_bias = nn.Parameter(torch.empty(n_heads, HIDDEN))
        self.hidden_weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_heads, HIDDEN, HIDDEN)) for _ in range(n_hidden_layers - 1)
        )
        self.hidden_biases = nn.ParameterList(
            nn.Parameter(torch.empty(n_heads, HIDDEN)) for _ in range(n_hidden_layers - 1)
        )
        self.last_weight = nn.Parameter(torch.zeros(n_heads, HIDDEN, out_features))
        self.last_bias = nn.Parameter(torch.zeros(n_heads, out_features))
        self.use_norm = norm_layer is not None
        self.global_stats = False  # set under torchrun: norm statistics over every rank's shard
        if self.use_norm:
            self.norm_weight = nn.Parameter(torch.ones(n_heads, HIDDEN))
            self.norm_bias = nn.Parameter(torch.zeros(n_heads, HIDDEN))
            self.register_buffer("running_mean", torch.zeros(n_heads, HIDDEN))
            self.register_buffer("running_var", torch.ones(n_heads, HIDDEN))
        self._init_like_linear(self.first_weight, self.first_bias, in_features)
        for w, b in zip(self.hidden_weights, self.hidden_biases):
            self._init_like_linear(w, b, HIDDEN)

    @staticmethod
    def _init_like_linear(weight: torch.Tensor, bias: torch.Tensor, fan_in: int) -> None:
        """nn.Linear's default initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        bound = 1 / math.sqrt(fan_in)
        nn.init.uniform_(weight, -bound, bound)
        nn.init.uniform_(bias, -bound, bound)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features (B, F) -> β (n_heads, B, d)."""
        B = features.shape[0]
        n, h = self.n_heads, HIDDEN
        # One matmul for every head's first layer: (B, F) @ (F, n*h).
        w1 = self.first_weight.permute(1, 0, 2).reshape(-1, n * h)
        z = torch.addmm(self.first_bias.reshape(-1), features, w1)  # (B, n*h)
        if self.use_norm:
            norm_args = (
                z,
                self.running_mean.view(-1),
                self.running_var.view(-1),
                self.norm_weight.view(-1),
                self.norm_bias.view(-1),
            )
            if self.global_stats and self.training and across_ranks():
                z = global_batch_norm(*norm_args)
            else:
                z = F.batch_norm(*norm_args, training=self.training)
        z = z.relu().view(B, n, h).transpose(0, 1)  # (n, B, h)
        for w, b in zip(self.hidden_weights, self.hidden_biases):
            z = torch.baddbmm(b.unsqueeze(1), z, w).relu()  # (n, B, h)
        return torch.baddbmm(self.last_bias.unsqueeze(1), z, self.last_weight)  # (n, B, d)
