"""Data sets, augmentation and encodings, on real files in the real formats."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from cf2neuro.data import DATA_ENV, Events, bin_events, dataset_names, encode, load_dataset
from cf2neuro.data.augment import shift_images
from cf2neuro.data.cifar10 import MEAN, STD
from cf2neuro.errors import BadInputError, ConfigError, DatasetNotFoundError
import data_files as df


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0)


def stack(ds):
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return torch.stack(xs), torch.stack(ys)


# ---------------------------------------------------------------- digits
def test_digits_shapes_ranges_balance(digits):
    (xtr, ytr), (xte, yte) = stack(digits.train), stack(digits.test)
    assert digits.spec.input_shape == [1, 8, 8] and digits.spec.num_classes == 10
    assert digits.spec.kind == "static"
    assert xtr.shape[1:] == (1, 8, 8) and xtr.dtype == torch.float32 and ytr.dtype == torch.int64
    assert ytr[0].shape == () and len(xtr) + len(xte) == 1797
    assert 0.0 <= float(xtr.min()) and float(xtr.max()) == 1.0
    n_train, n_test = np.bincount(ytr.numpy(), minlength=10), np.bincount(yte.numpy(), minlength=10)
    assert np.all(np.abs(n_test - 0.2 * (n_train + n_test)) <= 0.5)  # stratified per class


def test_digits_split_is_seeded(digits):
    same, other = load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(stack(same.test)[0], stack(digits.test)[0])
    assert torch.equal(stack(same.train)[1], stack(digits.train)[1])
    assert not torch.equal(stack(other.test)[0], stack(digits.test)[0])


def test_shift_images_moves_pixels_by_hand():
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 2, 3] = 1.0
    x[1, 0, 0, 0] = 1.0  # shifted out of the image: becomes fill
    out = shift_images(x, torch.tensor([1, -1]), torch.tensor([-1, 0]))
    assert out[0, 0, 3, 2] == 1.0 and out[0].sum() == 1.0
    assert out[1].sum() == 0.0


def test_digits_augment_is_seeded_shift(digits):
    x = stack(digits.train)[0][:64]
    a1 = digits.augment(x, torch.Generator().manual_seed(3))
    a2 = digits.augment(x, torch.Generator().manual_seed(3))
    a3 = digits.augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(a1, a2) and not torch.equal(a1, a3)
    shifted = 0
    for b in range(len(x)):  # every output is one of the 9 shifted, zero-filled copies
        copies = [shift_images(x[b:b + 1], torch.tensor([dy]), torch.tensor([dx]))[0]
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        assert any(torch.equal(a1[b], c) for c in copies)
        shifted += not torch.equal(a1[b], x[b])
    assert shifted > 32
    pickle.loads(pickle.dumps(digits.augment))  # DataLoader workers can carry it


# ---------------------------------------------------------------- encodings
def test_encode_direct_repeats_exactly():
    x = torch.rand(3, 1, 8, 8)
    seq = encode(x, 5)
    assert seq.shape == (5, 3, 1, 8, 8) and all(torch.equal(s, x) for s in seq)


def test_encode_poisson_rate_and_reproducibility():
    x = torch.tensor([[-0.5, 0.0, 0.1, 0.5, 0.9, 1.0, 2.0]])
    seq = encode(x, 4000, "poisson", torch.Generator().manual_seed(0))
    assert set(seq.unique().tolist()) <= {0.0, 1.0}
    rate, target = seq.mean(0)[0], x.clamp(0, 1)[0]
    sigma = torch.sqrt(target * (1 - target) / 4000)
    assert torch.all((rate - target).abs() <= 4 * sigma + 1e-9)
    again = encode(x, 4000, "poisson", torch.Generator().manual_seed(0))
    other = encode(x, 4000, "poisson", torch.Generator().manual_seed(1))
    assert torch.equal(seq, again) and not torch.equal(seq, other)


def test_encode_frames_transposes_and_rebins():
    x = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    seq = encode(x, 4, "frames")
    assert seq.shape == (4, 2, 3) and torch.equal(seq[1, 0], x[0, 1])
    two = encode(x, 2, "frames")
    assert torch.equal(two[1, 1], x[1, 2] + x[1, 3])
    with pytest.raises(ConfigError, match="frames=3"):
        encode(x, 3, "frames")


def test_encode_rejects_bad_options():
    with pytest.raises(ConfigError, match="direct"):
        encode(torch.zeros(1, 2), 2, "rate")
    with pytest.raises(ConfigError):
        encode(torch.zeros(1, 2), 0)


# ---------------------------------------------------------------- registry
def test_registry_errors():
    assert {"digits", "cifar10", "nmnist", "cifar10-dvs", "dvs128-gesture"} <= set(dataset_names())
    with pytest.raises(ConfigError, match="digits"):
        load_dataset("mnist-ish")
    with pytest.raises(ConfigError, match="max_shift"):
        load_dataset("digits", frames=4)


def test_import_stays_light():
    code = "import sys, cf2neuro.data; print(any(m in sys.modules for m in ('sklearn', 'tonic')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---------------------------------------------------------------- CIFAR-10
def cifar_tree(base, n=4):
    rng = np.random.default_rng(0)
    d = base / "cifar10" / "cifar-10-batches-bin"
    written = {}
    for i, name in enumerate([f"data_batch_{k}.bin" for k in range(1, 6)] + ["test_batch.bin"]):
        imgs = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        labels = (np.arange(n) + i) % 10
        written[name] = (imgs, labels, df.write_cifar_bin(d / name, imgs, labels))
    return d, written


def test_cifar10_round_trips_labels_and_pixels(tmp_path):
    d, written = cifar_tree(tmp_path)
    bundle = load_dataset("cifar10", root=str(tmp_path))
    x, y = stack(bundle.train)
    imgs = np.concatenate([written[f"data_batch_{k}.bin"][0] for k in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{k}.bin"][1] for k in range(1, 6)])
    assert x.shape == (20, 3, 32, 32) and torch.equal(y, torch.from_numpy(labels))
    raw = (x * torch.tensor(STD).view(3, 1, 1) + torch.tensor(MEAN).view(3, 1, 1)) * 255
    assert torch.equal(raw.round().to(torch.uint8), torch.from_numpy(imgs))
    record = (d / "data_batch_1.bin").read_bytes()[:3073]  # hand-check the CHW byte order
    assert round(float(raw[0, 2, 5, 7])) == record[1 + 2 * 1024 + 5 * 32 + 7]
    assert len(bundle.test) == 4 and bundle.augment(x, torch.Generator()).shape == x.shape
    assert len(load_dataset("cifar10", root=str(d)).train) == 20  # root may be the batch dir


def test_cifar10_truncated_file_is_bad_input(tmp_path):
    d, written = cifar_tree(tmp_path)
    path = d / "data_batch_3.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(BadInputError, match="data_batch_3.bin.*3073"):
        load_dataset("cifar10", root=str(tmp_path))


def test_missing_data_names_expected_paths(tmp_path, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", root=str(tmp_path / "nowhere"))
    expected = tmp_path / "nowhere" / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin"
    assert str(expected) in str(err.value) and "cifar-10-binary.tar.gz" in str(err.value)
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "env" / "nmnist" / "Train")):
        load_dataset("nmnist")


# ---------------------------------------------------------------- events
def test_bin_events_by_count_time_and_size():
    ev = Events(x=np.array([0, 3, 3, 1]), y=np.array([0, 2, 2, 3]),
                t=np.array([0, 10, 11, 100]), p=np.array([1, 0, 0, 1]))
    by_count = bin_events(ev, 2, (4, 4), (4, 4), "count")
    assert by_count[0, 1, 0, 0] == 1 and by_count[0, 0, 2, 3] == 1 and by_count[1, 0, 2, 3] == 1
    by_time = bin_events(ev, 2, (4, 4), (4, 4), "time")
    assert by_time[0, 0, 2, 3] == 2 and by_time[1, 1, 3, 1] == 1 and by_time.sum() == 4
    small = bin_events(ev, 1, (4, 4), (2, 2), "count")
    assert small[0, 0, 1, 1] == 2 and small[0, 1, 1, 0] == 1 and small.dtype == np.float32


def test_nmnist_reads_bin_events(tmp_path):
    root = tmp_path / "nmnist"
    df.write_nmnist_bin(root / "Train" / "3" / "00001.bin",
                        [(5, 7, 100, 1), (5, 7, 200, 1), (33, 0, 300, 0), (2, 9, 70000, 0)],
                        overflow_before={3})
    df.write_nmnist_bin(root / "Test" / "8" / "00002.bin", [(1, 1, 5, 0)])
    bundle = load_dataset("nmnist", root=str(tmp_path), frames=2, bin_by="time")
    assert bundle.spec.kind == "frames" and bundle.spec.input_shape == [2, 34, 34]
    x, y = bundle.train[0]
    assert x.shape == (2, 2, 34, 34) and int(y) == 3 and x.sum() == 4
    assert x[0, 1, 7, 5] == 2 and x[0, 0, 0, 33] == 1 and x[1, 0, 9, 2] == 1
    assert len(bundle.test) == 1 and int(bundle.test[0][1]) == 8
    (root / "Test" / "8" / "00002.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(BadInputError, match="00002.bin.*truncated"):
        bundle.test[0]
    df.write_nmnist_bin(root / "Test" / "8" / "00002.bin", [(40, 1, 5, 0)])
    with pytest.raises(BadInputError, match="outside"):
        bundle.test[0]


def cifar10_dvs_tree(base, per_class):
    for c, cls in enumerate(["airplane", "automobile", "bird", "cat", "deer",
                             "dog", "frog", "horse", "ship", "truck"]):
        for i in range(per_class):
            events = [(df.dvs128_address(5, 10, 0), 1), (df.dvs128_address(5, 10, 1), 2),
                      (df.dvs128_address(c, 0, 1), 3)]
            df.write_aedat2(base / "cifar10-dvs" / cls / f"cifar10_{cls}_{i}.aedat", events)


def test_cifar10_dvs_reads_aedat2(tmp_path):
    cifar10_dvs_tree(tmp_path, per_class=10)
    tebn = load_dataset("cifar10-dvs", root=str(tmp_path), frames=1)
    assert len(tebn.train) == 0 and len(tebn.test) == 100  # samples 0..99 of a class are test
    bundle = load_dataset("cifar10-dvs", root=str(tmp_path), frames=1, split="random", size=64)
    assert len(bundle.train) == 90 and len(bundle.test) == 10
    x, y = bundle.train[0]
    # sensor (x=5, y=10): column 127-10, row 127-5, halved for size=64; bit 0 = 0 is ON (channel 1)
    assert x.shape == (1, 2, 64, 64) and x[0, 1, 61, 58] == 1 and x[0, 0, 61, 58] == 1
    assert x[0, 0, (127 - int(y)) // 2, 63] == 1 and x.sum() == 3
    xb = torch.stack([x, x])
    assert bundle.augment(xb, torch.Generator().manual_seed(0)).shape == xb.shape
    bad = tmp_path / "cifar10-dvs" / "cat" / "cifar10_cat_0.aedat"
    df.write_aedat2(bad, [(1, 2)], version="3.1")
    with pytest.raises(BadInputError, match="version 3.1"):
        load_dataset("cifar10-dvs", root=str(tmp_path), frames=1).test[30]
    bad.write_bytes(b"#!AER-DAT2.0\r\n" + b"\x00" * 12)
    with pytest.raises(BadInputError, match="truncated"):
        load_dataset("cifar10-dvs", root=str(tmp_path), frames=1).test[30]


def test_dvs_gesture_reads_aedat31_and_labels(tmp_path):
    d = tmp_path / "dvs128-gesture" / "DvsGesture"
    w = df.polarity_word
    packets = [
        df.aedat31_packet(0, [(0x12345678, 50)]),  # special events: skipped
        df.aedat31_packet(1, [(w(10, 20, 1), 100), (w(10, 20, 1), 150), (w(3, 4, 0), 199),
                              (w(9, 9, 1, valid=0), 120), (w(1, 2, 0), 250)], capacity=6),
        df.aedat31_packet(1, [(w(127, 0, 1), 5)], ts_overflow=1),  # t = 5 + 2^31
    ]
    df.write_gesture_recording(d, "user01_led", packets, [(2, 100, 200), (11, 200, 300)])
    df.write_gesture_recording(d, "user02_led", packets, [(5, 2**31, 2**31 + 10)])
    (d / "trials_to_train.txt").write_text("user01_led.aedat\n\n")
    (d / "trials_to_test.txt").write_text("user02_led.aedat\n")
    bundle = load_dataset("dvs128-gesture", root=str(tmp_path), frames=1)
    assert bundle.spec.num_classes == 11 and len(bundle.train) == 2 and len(bundle.test) == 1
    x, y = bundle.train[0]
    assert int(y) == 1 and x.shape == (1, 2, 128, 128) and x.sum() == 3
    assert x[0, 1, 20, 10] == 2 and x[0, 0, 4, 3] == 1
    x, y = bundle.train[1]
    assert int(y) == 10 and x.sum() == 1 and x[0, 0, 2, 1] == 1
    x, y = bundle.test[0]
    assert int(y) == 4 and x.sum() == 1 and x[0, 1, 0, 127] == 1
    (d / "user02_led.aedat").write_bytes((d / "user02_led.aedat").read_bytes()[:-5])
    from cf2neuro.data.dvs_gesture import read_aedat31_polarity
    read_aedat31_polarity.cache_clear()
    with pytest.raises(BadInputError, match="user02_led.aedat.*past the end"):
        bundle.test[0]
