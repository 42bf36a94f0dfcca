"""DistributedLossWrapper / DistributedMinerWrapper in 2 real processes (gloo, 127.0.0.1).

One spawned job runs every check on both ranks (a process start costs seconds); each check
compares the wrapped loss and the local gradient with one process on the concatenated batch
(float64). DDP averages gradients over the processes, so "the one-process gradient" is, per
local embedding, world_size x the one-process gradient (the DDP check shows the model's).
The PML checks compare with PML's wrapper where it is installed: PML returns world_size x the
loss, with the same embedding gradients.
"""

import datetime
import json
import os
import socket
import traceback
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from metric_runner import losses, miners
from metric_runner.utils import distributed as mr_dist
from metric_runner.utils import loss_and_miner_utils as lmu

WORLD_SIZE = 2
BATCH = 6  # per process
DIM = 5
CLASSES = 3
CHECKS = {}
PML_CHECKS = {}


def check(registry):
    def register(fn):
        registry[fn.__name__] = fn
        return fn

    return register


def assert_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


# A check records its failed expectations and goes on, so both ranks always make the same
# collective calls (a rank leaving a check early would pair its next all_gather with the wrong one).
FAILURES = []


def expect_close(actual, expected):
    try:
        assert_close(actual, expected)
    except AssertionError:
        FAILURES.append(traceback.format_exc())


def expect(condition, what):
    if not condition:
        FAILURES.append(f"expected {what}\n" + "".join(traceback.format_stack(limit=3)))


def batch(seed, size=WORLD_SIZE * BATCH, classes=CLASSES):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(size, DIM, generator=generator, dtype=torch.float64)
    return embeddings, torch.randint(0, classes, (size,), generator=generator)


def local(x, rank):
    size = len(x) // WORLD_SIZE
    return x[rank * size : (rank + 1) * size]


def local_first(x, rank):
    """The gathered layout the wrappers' tuples index: this rank's slice, then the others."""
    size = len(x) // WORLD_SIZE
    others = [x[r * size : (r + 1) * size] for r in range(WORLD_SIZE) if r != rank]
    return torch.cat([local(x, rank)] + others)


def wrapped_step(wrapper, embeddings, labels, rank, *args, miner=None, **kwargs):
    """(loss, gradient of the local slice) of one wrapped call on this rank's slice."""
    emb = local(embeddings, rank).clone().requires_grad_(True)
    if miner is not None:
        args = (miner(emb, local(labels, rank)),)
    loss = wrapper(emb, local(labels, rank), *args, **kwargs)
    loss.backward()
    return loss.detach(), emb.grad


def reference_step(loss_of, embeddings, rank):
    """(loss, world_size x its gradient on this rank's rows) of loss_of(full batch), in one
    process."""
    full = embeddings.clone().requires_grad_(True)
    loss = loss_of(full)
    loss.backward()
    return loss.detach(), WORLD_SIZE * local(full.grad, rank)


def without_self_pairs(pairs):
    """Pairs of local anchors with the local-first gathered batch, minus each anchor's pair
    with itself (written out here, independently of the library's helper)."""
    a1, p, a2, n = pairs
    keep = a1 != p
    return a1[keep], p[keep], a2, n


def efficient_reference(make_loss, labels, rank, mined=None):
    """loss_of for efficient=True: local anchors against the local-first gathered batch."""

    def loss_of(full):
        all_emb, all_labels = local_first(full, rank), local_first(labels, rank)
        anchors, anchor_labels = local(full, rank), local(labels, rank)
        if mined is None:
            pairs = without_self_pairs(lmu.get_all_pairs_indices(anchor_labels, all_labels))
        else:
            pairs = mined(anchors.detach(), anchor_labels, all_emb.detach(), all_labels)
        return make_loss()(anchors, anchor_labels, pairs, all_emb, all_labels)

    return loss_of


def contrastive():
    return losses.ContrastiveLoss(pos_margin=0.2, neg_margin=0.7)


def ntxent():
    return losses.NTXentLoss(temperature=0.3)


def triplet():
    return losses.TripletMarginLoss(margin=0.3)


def ms_miner():
    return miners.MultiSimilarityMiner(epsilon=0.2)


def arcface():
    torch.manual_seed(7)  # the same class weights in every copy
    return losses.ArcFaceLoss(CLASSES, DIM, margin=20, scale=16).double()


def cross_batch_memory(inner, miner=None):
    return losses.CrossBatchMemory(inner, DIM, memory_size=16, miner=miner)


@check(CHECKS)
def pair_and_ntxent_losses(rank):
    embeddings, labels = batch(1)
    for make_loss in (contrastive, ntxent):
        wrapper = mr_dist.DistributedLossWrapper(make_loss())
        loss, grad = wrapped_step(wrapper, embeddings, labels, rank)
        ref_loss, ref_grad = reference_step(
            lambda x, make_loss=make_loss: make_loss()(x, labels), embeddings, rank
        )
        expect_close(loss, ref_loss)
        expect_close(grad, ref_grad)


@check(CHECKS)
def pair_and_ntxent_losses_efficient(rank):
    embeddings, labels = batch(2)
    for make_loss in (contrastive, ntxent):
        wrapper = mr_dist.DistributedLossWrapper(make_loss(), efficient=True)
        loss, grad = wrapped_step(wrapper, embeddings, labels, rank)
        ref = reference_step(efficient_reference(make_loss, labels, rank), embeddings, rank)
        expect_close(loss, ref[0])
        expect_close(grad, ref[1])


@check(CHECKS)
def triplet_loss_with_miner(rank):
    embeddings, labels = batch(3)
    miner = mr_dist.DistributedMinerWrapper(ms_miner())
    wrapper = mr_dist.DistributedLossWrapper(triplet())
    loss, grad = wrapped_step(wrapper, embeddings, labels, rank, miner=miner)

    def loss_of(full):
        return triplet()(full, labels, ms_miner()(full.detach(), labels))

    ref_loss, ref_grad = reference_step(loss_of, embeddings, rank)
    expect_close(loss, ref_loss)
    expect_close(grad, ref_grad)


@check(CHECKS)
def triplet_loss_with_miner_efficient(rank):
    embeddings, labels = batch(4)
    miner = mr_dist.DistributedMinerWrapper(ms_miner(), efficient=True)
    wrapper = mr_dist.DistributedLossWrapper(triplet(), efficient=True)
    loss, grad = wrapped_step(wrapper, embeddings, labels, rank, miner=miner)

    def mined(*args):
        return without_self_pairs(ms_miner()(*args))

    ref = reference_step(efficient_reference(triplet, labels, rank, mined), embeddings, rank)
    expect(loss > 0, "a positive loss")
    expect_close(loss, ref[0])
    expect_close(grad, ref[1])


@check(CHECKS)
def proxy_loss(rank):
    """Embedding gradients as for every loss; the class weights get the one-process gradient
    on every rank (so the copies never drift apart)."""
    embeddings, labels = batch(5)
    wrapper = mr_dist.DistributedLossWrapper(arcface())
    loss, grad = wrapped_step(wrapper, embeddings, labels, rank)
    reference = arcface()
    ref_loss, ref_grad = reference_step(lambda x: reference(x, labels), embeddings, rank)
    expect_close(loss, ref_loss)
    expect_close(grad, ref_grad)
    expect_close(wrapper.loss.W.grad, reference.W.grad)


@check(CHECKS)
def proxy_loss_efficient(rank):
    """The proxies are the reference set: each rank computes its own samples' loss."""
    embeddings, labels = batch(6)
    wrapper = mr_dist.DistributedLossWrapper(arcface(), efficient=True)
    loss, grad = wrapped_step(wrapper, embeddings, labels, rank)
    reference = arcface()
    ref = reference_step(lambda x: reference(local(x, rank), local(labels, rank)), embeddings, rank)
    expect_close(loss, ref[0])
    expect_close(grad, ref[1])
    expect_close(wrapper.loss.W.grad, reference.W.grad)


@check(CHECKS)
def ref_emb_passed_through(rank):
    """ref_emb/ref_labels are gathered too, and their local slice keeps its gradient."""
    embeddings, labels = batch(7)
    ref_emb, ref_labels = batch(8, size=WORLD_SIZE * 4)
    for efficient in (False, True):
        emb = local(embeddings, rank).clone().requires_grad_(True)
        ref = local(ref_emb, rank).clone().requires_grad_(True)
        wrapper = mr_dist.DistributedLossWrapper(triplet(), efficient=efficient)
        loss = wrapper(emb, local(labels, rank), None, ref, local(ref_labels, rank))
        loss.backward()
        full_emb = embeddings.clone().requires_grad_(True)
        full_ref = ref_emb.clone().requires_grad_(True)
        query = local(full_emb, rank) if efficient else full_emb
        query_labels = local(labels, rank) if efficient else labels
        ref_loss = triplet()(query, query_labels, None, full_ref, ref_labels)
        ref_loss.backward()
        expect_close(loss, ref_loss)
        expect_close(emb.grad, WORLD_SIZE * local(full_emb.grad, rank))
        expect_close(ref.grad, WORLD_SIZE * local(full_ref.grad, rank))


@check(CHECKS)
def miner_with_ref_emb(rank):
    embeddings, labels = batch(10)
    ref_emb, ref_labels = batch(11, size=WORLD_SIZE * 4)
    all_ref, all_ref_labels = local_first(ref_emb, rank), local_first(ref_labels, rank)
    for efficient in (False, True):
        mined = mr_dist.DistributedMinerWrapper(ms_miner(), efficient)(
            local(embeddings, rank),
            local(labels, rank),
            local(ref_emb, rank),
            local(ref_labels, rank),
        )
        query = (local if efficient else local_first)(embeddings, rank)
        query_labels = (local if efficient else local_first)(labels, rank)
        expected = ms_miner()(query, query_labels, all_ref, all_ref_labels)
        expect(len(expected[0]) > 0, "some mined pairs")
        expect(all(torch.equal(x, y) for x, y in zip(mined, expected)), "the same pairs")


@check(CHECKS)
def indices_tuple_indexes_the_local_first_batch(rank):
    """A local miner's tuple (indices < batch size) names this rank's own samples."""
    embeddings, labels = batch(9)
    wrapper = mr_dist.DistributedLossWrapper(contrastive())
    loss, grad = wrapped_step(wrapper, embeddings, labels, rank, miner=ms_miner())
    pairs = ms_miner()(local(embeddings, rank), local(labels, rank))

    def loss_of(full):
        return contrastive()(local_first(full, rank), local_first(labels, rank), pairs)

    ref_loss, ref_grad = reference_step(loss_of, embeddings, rank)
    expect_close(loss, ref_loss)
    expect_close(grad, ref_grad)


def cross_batch_steps(wrapper, reference, rank, seed, with_mask):
    """Three steps (the 16-slot memory wraps at the second); asserts every one."""
    for step in range(3):
        embeddings, labels = batch(seed + step)
        mask = labels == 0 if with_mask else None
        kwargs = {} if mask is None else {"enqueue_mask": local(mask, rank)}
        loss, grad = wrapped_step(wrapper, embeddings, labels, rank, **kwargs)
        ref_loss, ref_grad = reference_step(
            lambda x, labels=labels, mask=mask: reference(x, labels, enqueue_mask=mask),
            embeddings,
            rank,
        )
        expect_close(loss, ref_loss)
        expect_close(grad, ref_grad)
        expect(torch.equal(wrapper.loss.label_memory, reference.label_memory), "equal memories")
        expect_close(wrapper.loss.embedding_memory, reference.embedding_memory)


@check(CHECKS)
def cross_batch_memory_across_ranks(rank):
    """Every rank's memory holds what one process's would, at every step."""
    for with_mask, seed in ((False, 10), (True, 20)):
        inner = ntxent if with_mask else contrastive
        wrapper = mr_dist.DistributedLossWrapper(cross_batch_memory(inner()))
        cross_batch_steps(wrapper, cross_batch_memory(inner()), rank, seed, with_mask)
    wrapper = mr_dist.DistributedLossWrapper(cross_batch_memory(contrastive(), ms_miner()))
    cross_batch_steps(wrapper, cross_batch_memory(contrastive(), ms_miner()), rank, 30, False)


@check(CHECKS)
def cross_batch_memory_efficient(rank):
    """MoCo's layout: every process's keys (enqueue_mask) go into the memory, which stays
    one process's; the anchors are this process's other rows."""
    wrapper = mr_dist.DistributedLossWrapper(cross_batch_memory(ntxent()), efficient=True)
    reference = cross_batch_memory(ntxent())
    for step in range(3):
        embeddings, labels = batch(90 + step)
        mask = labels != 0

        def loss_of(full, labels=labels, mask=mask):
            reference(full.detach(), labels, enqueue_mask=mask)  # one process's memory update
            filled = None if reference.has_been_filled else reference.queue_idx
            anchors = ~local(mask, rank)
            return ntxent()(
                local(full, rank)[anchors],
                local(labels, rank)[anchors],
                None,
                reference.embedding_memory[:filled],
                reference.label_memory[:filled],
            )

        kwargs = {"enqueue_mask": local(mask, rank)}
        loss, grad = wrapped_step(wrapper, embeddings, labels, rank, **kwargs)
        ref_loss, ref_grad = reference_step(loss_of, embeddings, rank)
        expect_close(loss, ref_loss)
        expect_close(grad, ref_grad)
        expect(torch.equal(wrapper.loss.label_memory, reference.label_memory), "equal memories")
    try:
        wrapper(*batch(99))
        expect(False, "a ValueError without enqueue_mask")
    except ValueError as error:
        expect("needs enqueue_mask" in str(error), "the error to name enqueue_mask")


@check(CHECKS)
def cross_batch_memory_with_indices_tuple(rank):
    """The tuple's anchors index the local-first batch (PML's layout), its positives and
    negatives the memory: the same as one process given the anchors' global positions."""
    anchors = torch.tensor([0, 1, 4, 5])  # this rank's rows 0, 1, 4, 5
    memory_rows = torch.tensor([0, 7, 9, 2])
    pairs = (anchors[:2], memory_rows[:2], anchors[2:], memory_rows[2:])
    global_anchors = anchors + rank * BATCH
    global_pairs = (global_anchors[:2], memory_rows[:2], global_anchors[2:], memory_rows[2:])
    wrapper = mr_dist.DistributedLossWrapper(cross_batch_memory(contrastive()))
    reference = cross_batch_memory(contrastive())
    for step in range(2):
        embeddings, labels = batch(80 + step)
        loss, grad = wrapped_step(wrapper, embeddings, labels, rank, pairs)
        ref_loss, ref_grad = reference_step(
            lambda x, labels=labels: reference(x, labels, global_pairs), embeddings, rank
        )
        expect_close(loss, ref_loss)
        expect_close(grad, ref_grad)


@check(CHECKS)
def ddp_model_gets_the_one_process_gradient(rank):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, DIM).double()
    reference = torch.nn.Linear(4, DIM).double()
    reference.load_state_dict(model.state_dict())
    ddp_model = torch.nn.parallel.DistributedDataParallel(model)
    inputs, labels = batch(40)
    inputs = inputs[:, :4]
    wrapper = mr_dist.DistributedLossWrapper(ntxent())
    wrapper(ddp_model(local(inputs, rank)), local(labels, rank)).backward()
    ntxent()(reference(inputs), labels).backward()
    expect_close(model.weight.grad, reference.weight.grad)
    expect_close(model.bias.grad, reference.bias.grad)


@check(CHECKS)
def gather_helpers(rank):
    embeddings, labels = batch(41)
    others = local_first(embeddings, rank)[BATCH:]
    expect(torch.equal(mr_dist.all_gather(local(embeddings, rank)), others), "the others' rows")
    emb, lab = mr_dist.all_gather_embeddings_and_labels(
        local(embeddings, rank), local(labels, rank)
    )
    expect(torch.equal(emb, others), "the others' embeddings")
    expect(torch.equal(lab, local_first(labels, rank)[BATCH:]), "the others' labels")
    expect(mr_dist.is_distributed(), "is_distributed() under a process group")


@check(PML_CHECKS)
def pml_same_values(rank):
    """PML returns world_size x our loss; the embedding gradients are the same."""
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning import miners as pml_miners
    from pytorch_metric_learning.utils import distributed as pml_dist

    embeddings, labels = batch(50)
    cases = [
        (contrastive, lambda: pml_losses.ContrastiveLoss(pos_margin=0.2, neg_margin=0.7), None),
        (ntxent, lambda: pml_losses.NTXentLoss(temperature=0.3), None),
        (triplet, lambda: pml_losses.TripletMarginLoss(margin=0.3), "miner"),
    ]
    for ours, theirs, with_miner in cases:
        for efficient in (False, True):
            our_miner = pml_miner = None
            if with_miner:
                our_miner = mr_dist.DistributedMinerWrapper(ms_miner(), efficient)
                pml_miner = pml_dist.DistributedMinerWrapper(
                    pml_miners.MultiSimilarityMiner(epsilon=0.2), efficient
                )
            loss, grad = wrapped_step(
                mr_dist.DistributedLossWrapper(ours(), efficient),
                embeddings,
                labels,
                rank,
                miner=our_miner,
            )
            pml_loss, pml_grad = wrapped_step(
                pml_dist.DistributedLossWrapper(theirs(), efficient),
                embeddings,
                labels,
                rank,
                miner=pml_miner,
            )
            expect_close(WORLD_SIZE * loss, pml_loss)
            expect_close(grad, pml_grad)


@check(PML_CHECKS)
def pml_same_mined_tuples(rank):
    from pytorch_metric_learning import miners as pml_miners
    from pytorch_metric_learning.utils import distributed as pml_dist

    embeddings, labels = batch(51)
    for efficient in (False, True):
        ours = mr_dist.DistributedMinerWrapper(ms_miner(), efficient)(
            local(embeddings, rank), local(labels, rank)
        )
        theirs = pml_dist.DistributedMinerWrapper(
            pml_miners.MultiSimilarityMiner(epsilon=0.2), efficient
        )(local(embeddings, rank), local(labels, rank))
        for our_part, their_part in ((ours[:2], theirs[:2]), (ours[2:], theirs[2:])):
            expect(
                sorted(zip(*[x.tolist() for x in our_part]))
                == sorted(zip(*[x.tolist() for x in their_part])),
                "PML's mined pairs",
            )


@check(PML_CHECKS)
def pml_proxy_weights_get_world_size_times_the_gradient(rank):
    """The documented difference: PML's class-weight gradient is world_size x one process's."""
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning.utils import distributed as pml_dist

    embeddings, labels = batch(52)
    ours = arcface()
    theirs = pml_losses.ArcFaceLoss(CLASSES, DIM, margin=20, scale=16).double()
    theirs.W.data.copy_(ours.W.data)
    loss, grad = wrapped_step(mr_dist.DistributedLossWrapper(ours), embeddings, labels, rank)
    pml_loss, pml_grad = wrapped_step(
        pml_dist.DistributedLossWrapper(theirs), embeddings, labels, rank
    )
    expect_close(WORLD_SIZE * loss, pml_loss)
    expect_close(grad, pml_grad)
    expect_close(WORLD_SIZE * ours.W.grad, theirs.W.grad)


@check(PML_CHECKS)
def pml_efficient_ref_emb_drops_a_pair_by_index(rank):
    """The documented difference: with efficient=True and ref_emb, PML drops query i's pair
    with reference row i, a different sample that happens to share the index."""
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning.utils import distributed as pml_dist

    embeddings, labels = batch(53)
    ref_emb, ref_labels = batch(54, size=WORLD_SIZE * 4)
    query, query_labels = local(embeddings, rank), local(labels, rank)
    all_ref, all_ref_labels = local_first(ref_emb, rank), local_first(ref_labels, rank)
    wrapper = pml_dist.DistributedLossWrapper(pml_losses.TripletMarginLoss(margin=0.3), True)
    pml_loss = wrapper(query, query_labels, None, local(ref_emb, rank), local(ref_labels, rank))
    pairs = without_self_pairs(lmu.get_all_pairs_indices(query_labels, all_ref_labels))
    dropped = triplet()(query, query_labels, pairs, all_ref, all_ref_labels)
    kept = mr_dist.DistributedLossWrapper(triplet(), True)(
        query, query_labels, None, local(ref_emb, rank), local(ref_labels, rank)
    )
    expect_close(pml_loss, WORLD_SIZE * dropped)
    expect(not torch.allclose(kept, dropped), "a different loss once the pair is kept")


@check(PML_CHECKS)
def pml_cross_batch_memory_until_it_wraps(rank):
    """PML fills each rank's memory in local-first order, so after the queue wraps only rank 0
    (whose local-first order is the rank order) still holds one process's memory."""
    from pytorch_metric_learning import losses as pml_losses
    from pytorch_metric_learning.utils import distributed as pml_dist

    ours = mr_dist.DistributedLossWrapper(cross_batch_memory(contrastive()))
    theirs = pml_dist.DistributedLossWrapper(
        pml_losses.CrossBatchMemory(
            pml_losses.ContrastiveLoss(pos_margin=0.2, neg_margin=0.7), DIM, memory_size=16
        )
    )
    for step in range(3):
        embeddings, labels = batch(60 + step)
        loss, grad = wrapped_step(ours, embeddings, labels, rank)
        pml_loss, pml_grad = wrapped_step(theirs, embeddings, labels, rank)
        if rank == 0 or step == 0:
            expect_close(WORLD_SIZE * loss, pml_loss)
            expect_close(grad, pml_grad)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_checks(checks, rank):
    results = {}
    for name, fn in checks.items():
        FAILURES.clear()
        try:
            fn(rank)
        except Exception:  # reported per check by the parent
            FAILURES.append(traceback.format_exc())
        results[name] = "\n".join(FAILURES) or "ok"
    return results


def worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD_SIZE,
        timeout=datetime.timedelta(seconds=60),  # a desynchronised check fails, never hangs
    )
    results = run_checks(CHECKS, rank)
    try:
        import pytorch_metric_learning  # noqa: F401
    except ImportError:
        results.update({name: "PML not installed" for name in PML_CHECKS})
    else:
        results.update(run_checks(PML_CHECKS, rank))
    dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("distributed")
    mp.spawn(worker, args=(free_port(), str(out_dir)), nprocs=WORLD_SIZE)
    results = []
    for rank in range(WORLD_SIZE):
        with open(out_dir / f"rank{rank}.json") as f:
            results.append(json.load(f))
    return results


@pytest.mark.parametrize("name", list(CHECKS))
def test_two_processes_match_one(rank_results, name):
    for rank, results in enumerate(rank_results):
        assert results[name] == "ok", f"rank {rank}:\n{results[name]}"


@pytest.mark.parametrize("name", list(PML_CHECKS))
def test_two_processes_match_pml(pml, rank_results, name):
    for rank, results in enumerate(rank_results):
        assert results[name] == "ok", f"rank {rank}:\n{results[name]}"


def test_without_process_group_the_wrappers_are_the_plain_loss_and_miner():
    embeddings, labels = batch(70)
    for efficient in (False, True):
        with pytest.warns(UserWarning, match="non-distributed setting"):
            loss = mr_dist.DistributedLossWrapper(contrastive(), efficient)(embeddings, labels)
        assert_close(loss, contrastive()(embeddings, labels))
        with pytest.warns(UserWarning, match="non-distributed setting"):
            mined = mr_dist.DistributedMinerWrapper(ms_miner(), efficient)(embeddings, labels)
        for ours, plain in zip(mined, ms_miner()(embeddings, labels)):
            assert torch.equal(ours, plain)
    mask = labels == 0
    memory = mr_dist.DistributedLossWrapper(cross_batch_memory(ntxent()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = memory(embeddings, labels, enqueue_mask=mask)
    assert_close(loss, cross_batch_memory(ntxent())(embeddings, labels, enqueue_mask=mask))
    assert not mr_dist.is_distributed()


def test_wrappers_refuse_what_they_cannot_wrap():
    for not_a_loss in (torch.nn.Linear(2, 2), ms_miner()):
        with pytest.raises(TypeError, match="must extend BaseMetricLossFunction"):
            mr_dist.DistributedLossWrapper(not_a_loss)
    with pytest.raises(TypeError, match="must extend BaseMiner"):
        mr_dist.DistributedMinerWrapper(contrastive())


def test_wrappers_are_modules_holding_the_wrapped_part():
    """state_dict keys as PML's (`loss.W`), so checkpoints move between the two."""
    wrapper = mr_dist.DistributedLossWrapper(arcface(), efficient=True)
    assert list(wrapper.state_dict()) == ["loss.W"] and wrapper.efficient
    miner_wrapper = mr_dist.DistributedMinerWrapper(ms_miner())
    assert miner_wrapper.miner.__class__ is miners.MultiSimilarityMiner
    assert not miner_wrapper.efficient
