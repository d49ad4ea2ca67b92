"""Training from Python (attamba.Trainer over attamba_trainer_*): the loss falls, fit's callback sees every
step and can stop it, a checkpoint resumes exactly, bad input raises."""
import numpy as np
import pytest

import attamba

TEXT = b"the cat sat on the mat. a dog ran in the park. the sun is warm today. " * 40


def data():
    return np.frombuffer(TEXT, dtype=np.uint8).astype(np.int32)


def test_fit_lowers_the_loss_and_calls_back_every_step(ctx):
    with attamba.Model.init(ctx, "tiny", seed=2) as m:
        t = attamba.Trainer(m, steps=40, batch=2, seq=32, warmup=2)
        assert t.params["batch"] == 2 and t.params["seq"] == 32 and t.params["accum"] == 1
        seen = []
        last = t.fit(data()[:2000], steps=25, callback=lambda st, val: seen.append((st, val)),
                     val_data=data()[2000:], val_rows=4)
        assert [st.step for st, _ in seen] == list(range(1, 26))
        assert last == seen[-1][0] and t.steps_done == 25
        assert seen[-1][0].loss < 0.6 * seen[0][0].loss
        assert seen[-1][1] < 0.6 * seen[0][1]  # held-out loss
        assert all(np.isfinite(st.grad_norm) and st.lr > 0 for st, _ in seen)
        # a callback returning False stops after that step
        stopped = t.fit(data(), steps=10, callback=lambda st, val: st.step < 27)
        assert stopped.step == 27 and t.steps_done == 27
        t.close()


def test_step_and_evaluate_shapes_and_a_checkpoint_that_resumes_exactly(ctx, tmp_path):
    rng = np.random.default_rng(0)
    with attamba.Model.init(ctx, "tiny", seed=3) as m:
        t = attamba.Trainer(m, steps=10, batch=2, seq=16, accum=2)
        ids = data()
        win = np.stack([ids[s:s + 17] for s in rng.integers(0, ids.size - 17, size=4)])
        st = t.step(win)  # windows [accum * batch, seq + 1]
        assert st.step == 1
        st2 = t.step(win[:, :-1], win[:, 1:])  # tokens and targets
        assert st2.step == 2 and st2.loss < st.loss
        before = t.evaluate(win)
        assert before == pytest.approx(t.evaluate(win[:, :-1].reshape(-1), win[:, 1:].reshape(-1)))
        t.save(tmp_path)
        m2, t2 = attamba.Trainer.load(ctx, tmp_path)
        assert t2.steps_done == 2 and t2.params == t.params
        a, b = t.step(win), t2.step(win)
        assert a == b  # bit for bit: same loss, gradient norm and rate
        np.testing.assert_array_equal(m.forward(win[0]), m2.forward(win[0]))
        with pytest.raises(ValueError):
            t.step(win[:3])  # not accum * batch rows
        with pytest.raises(TypeError):
            attamba.Trainer(m, steps=10, batch_size=2)
        bad = win.copy()
        bad[0, 5] = 999
        with pytest.raises(attamba.Error) as e:
            t.step(bad[:, :-1], bad[:, 1:])
        assert "outside" in str(e.value)
        with pytest.raises(attamba.Error):
            attamba.Trainer(m, steps=10, batch=0)
        t2.close()
        m2.close()
