"""fusekit optimizers inside training frameworks, against torch.optim in the same setting."""
import warnings

import pytest
import torch

import fusekit.optim as fo


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed", "32"])
def test_lightning_mixed_precision_with_gradient_clipping(precision):
    """Lightning refuses gradient_clip_val for optimizers that unscale inside their step
    (_step_supports_amp_scaling, torch's fused=True contract); fusekit's defaults do not."""
    L = pytest.importorskip("lightning")

    class Module(L.LightningModule):
        def __init__(self, cls):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
            self.cls = cls

        def training_step(self, batch, i):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x), y)

        def configure_optimizers(self):
            return self.cls(self.parameters(), lr=1e-2)

    def run(cls):
        torch.manual_seed(0)
        m = Module(cls)
        g = torch.Generator().manual_seed(1)
        data = torch.utils.data.TensorDataset(torch.randn(64, 8, generator=g), torch.randn(64, 1, generator=g))
        trainer = L.Trainer(max_steps=5, accelerator="cpu", precision=precision, gradient_clip_val=0.1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trainer.fit(m, torch.utils.data.DataLoader(data, batch_size=16))
        return [p.detach() for p in m.parameters()]

    for a, b in zip(run(fo.AdamW), run(torch.optim.AdamW)):
        torch.testing.assert_close(a, b)
