"""Find similar's rules around the network, in plain numpy/scipy (no model): which clicks it is
fed, and how its category probability becomes the proposals a user sees.

* Pseudo negatives (``split_negative_clicks``): an exemplar negative on another object of the
  category is not fed to the recall branch as a negative.
* The local update (``local_update``): a recall click changes only the objects under it.
* The automatic split (``split_instances``): watershed on the distance transform.
* A positive click inside a proposal that holds several objects cuts the click's object out of
  it (``split_off_click``). The cut is a 1 px line of background written into the probability,
  so it lasts: the local update never fills a line that separates two objects
  (``separating_gaps``).
* A negative click removes the whole proposal under it, not only the pixels the network drops,
  and an object whose last click is negative stays removed (``click_instances``).
* Size rule: proposals smaller than ``RecallConfig.min_area`` x the exemplar's area
  are specks and are not proposed, unless a positive click is on them.
* Committed objects (``drop_committed``): proposals already committed (the exemplar itself) are
  not proposed again.
The fix-click rules each touch only the proposal under the click, like the local update.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.morphology import convex_hull_image, local_maxima, reconstruction
from skimage.segmentation import watershed

from src_models import Click, Clicks

from .runtime import DEFAULT_THRESHOLD

# Split clicks, chosen with benchmarks/bench_split_click.py on the GT masks of the training splits
# (a click at the centre of the largest object of every proposal the automatic split merged):
# the clicked object is then right (IoU > 0.5) in 67 % of 431 merges on DSB2018[:50] and 75 % of
# 244 on MoNuSeg[56:] (GT objects right inside the merges 351 -> 619 and 227 -> 367), while the
# same click on a proposal that is one right object spoils it in 2.8 % / 2.7 % of them. Deeper
# domes (0.25 / 0.5 px) split fewer merges; a larger min part (0.25) halves the harm but loses a
# quarter of the splits (a small nucleus beside a big exemplar is under 0.25 x its area).
SPLIT_FINE_H = 0.1  # dome depth (px) of the re-seeded split
SPLIT_TOO_BIG = 1.3  # a proposal above this x the exemplar's area may hold an object without a dome
SPLIT_REACH = 1.5  # ... which lies beyond this x the click's inscribed radius
SPLIT_MIN_PART = 0.1  # both parts of a split hold at least this x the exemplar's area


def extended_maxima(dist: np.ndarray, h: float) -> np.ndarray:
    """The regional maxima of ``dist`` after h-reconstruction (extended maxima): every dome at
    least ``h`` high becomes one plateau, whatever the orientation of a flat or tilted ridge."""
    if h <= 0:
        raise ValueError(f"h must be > 0, got {h}")
    return local_maxima(reconstruction(dist - h, dist, method="dilation"), connectivity=2) & (dist > 0)


def split_height(exemplar: np.ndarray, per_radius: float) -> float:
    """The watershed marker height for objects like ``exemplar``: max(1 px, per_radius x its
    equivalent radius)."""
    radius = float(np.sqrt(np.count_nonzero(exemplar) / np.pi))
    return max(1.0, per_radius * radius)


def split_instances(mask: np.ndarray, min_size: int = 16, min_distance: int = 5,
                    h: float | None = 1.0) -> np.ndarray:
    """Instance labels (int32, 0 = background) of a category mask.

    Connected components first; touching objects inside one component are separated by the
    classic watershed on the distance transform. Markers: the extended maxima of the distance
    transform (domes at least ``h`` px high, each one plateau, so the ridge of an elongated
    object is one marker at any angle, not several) that hold a local maximum at least
    ``min_distance`` apart.
    On the ground-truth masks of the training splits this splits touching nuclei at object F1
    0.91 (DSB2018[:50]) / 0.97 (MoNuSeg[56:]), against 0.86 / 0.85 with the local maxima alone
    (``h=None``; ``benchmarks/bench_instance_split.py``). Pieces under ``min_size`` px are dropped.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"split_instances needs a 2-D mask, got shape {mask.shape}")
    out = np.zeros(mask.shape, np.int32)
    if not mask.any():
        return out
    components, n = ndimage.label(mask)
    next_id = 1
    for sl, comp_id in zip(ndimage.find_objects(components), range(1, n + 1), strict=True):
        comp = components[sl] == comp_id
        if comp.sum() < min_size:
            continue
        dist = ndimage.distance_transform_edt(np.pad(comp, 1))[1:-1, 1:-1]
        peaks = peak_local_max(dist, min_distance=min_distance, labels=comp.astype(np.int32),
                               exclude_border=False)
        if h is None:  # one marker per local maximum
            markers = np.zeros(comp.shape, np.int32)
            markers[peaks[:, 0], peaks[:, 1]] = np.arange(1, len(peaks) + 1)
            kept = np.arange(1, len(peaks) + 1)
        else:  # one marker per extended maximum (8-connected) that holds a local maximum
            markers, _ = ndimage.label(extended_maxima(dist, h), structure=np.ones((3, 3)))
            kept = np.unique(markers[peaks[:, 0], peaks[:, 1]]) if len(peaks) else np.zeros(0, int)
            kept = kept[kept > 0]
            markers = np.where(np.isin(markers, kept), markers, 0)
        parts = watershed(-dist, markers, mask=comp) if len(kept) > 1 else comp.astype(np.int32)
        for part in np.unique(parts[parts > 0]):
            piece = parts == part
            if piece.sum() >= min_size:
                out[sl][piece] = next_id
                next_id += 1
    return out


def split_off_click(piece: np.ndarray, y: int, x: int, expected_area: float | None = None, *,
                    fine_h: float = SPLIT_FINE_H, min_height: float = 1.0, too_big: float = SPLIT_TOO_BIG,
                    reach: float = SPLIT_REACH, min_part: float = SPLIT_MIN_PART) -> np.ndarray | None:
    """The object a positive click inside a proposal asks for, cut out of that proposal.

    ``piece`` (bool) is the proposal under the click at (``y``, ``x``); the click says it holds
    another object too. The watershed on its distance transform is re-seeded with two markers:
    the click together with the dome it sits in (when the click lies in that dome's inscribed
    disk), and every other dome at least ``min_height`` px high whose inscribed disk does not
    reach the click's dome (the neighbours). Domes are extended maxima only ``fine_h`` px deep,
    finer than the automatic split's, since the automatic split is what merged them. With no
    such dome (a small object on a big one's flank) and a proposal above ``too_big`` x
    ``expected_area`` (the exemplar's area), whatever lies beyond ``reach`` x the click's
    inscribed radius is the neighbours'. Both parts must hold ``min_part`` x ``expected_area``,
    so a click on one right object does not cut off a bump. Returns the click's object, or
    None when there is no other object to cut it from.
    """
    piece = np.asarray(piece, bool)
    if not piece[y, x]:
        return None
    dist = ndimage.distance_transform_edt(np.pad(piece, 1))[1:-1, 1:-1]
    domes, n = ndimage.label(extended_maxima(dist, fine_h), structure=np.ones((3, 3)))
    if n < 1:
        return None
    ids = np.arange(1, n + 1)
    heights = np.asarray(ndimage.maximum(dist, domes, ids), float)
    centres = np.asarray(ndimage.maximum_position(dist, domes, ids), float).reshape(n, 2)
    k = int(watershed(-dist, domes, mask=piece)[y, x])  # the dome the click climbs to
    own_centre, own_r = np.array([y, x], float), float(dist[y, x])
    if k and np.hypot(*(centres[k - 1] - own_centre)) <= heights[k - 1]:
        own_centre, own_r = centres[k - 1], heights[k - 1]
    else:
        k = 0  # the click is not in that dome's object: it marks an object of its own
    gaps = np.hypot(*(centres - own_centre).T)
    others = [j for j in ids if j != k and heights[j - 1] >= min_height
              and gaps[j - 1] > max(own_r, heights[j - 1])]
    markers = np.where(np.isin(domes, others), 2, 0).astype(np.int32)
    if not others and expected_area and piece.sum() > too_big * expected_area:
        yy, xx = np.indices(piece.shape)
        far = np.hypot(yy - own_centre[0], xx - own_centre[1]) > reach * max(own_r, 1.0)
        markers[piece & far & (dist >= min_height)] = 2
    if not (markers == 2).any():
        return None
    if k:
        markers[domes == k] = 1
    markers[y, x] = 1
    own = watershed(-dist, markers, mask=piece) == 1
    if expected_area and min(own.sum(), (piece & ~own).sum()) < min_part * expected_area:
        return None  # a tip or a bump of one object, not two objects
    return own


def click_pixel(click: Click, shape: tuple[int, int]) -> tuple[int, int]:
    """The pixel a click is on (clicks at pixel centres, clipped to the image)."""
    return (min(max(int(round(click.y)), 0), shape[0] - 1), min(max(int(round(click.x)), 0), shape[1] - 1))


def separating_gaps(components: np.ndarray) -> np.ndarray:
    """Background pixels whose 3 x 3 neighbourhood touches two different objects of
    ``components`` (labels): the lines that keep touching objects apart (a split's cut)."""
    components = np.asarray(components, np.int32)
    top = np.iinfo(np.int32).max
    hi = ndimage.maximum_filter(components, size=3)
    lo = ndimage.minimum_filter(np.where(components > 0, components, top), size=3)
    return (components == 0) & (hi > 0) & (lo < top) & (hi != lo)


def instance_near(labels: np.ndarray, y: int, x: int, reach: float) -> int:
    """The label under (y, x), else the nearest one within ``reach`` px whose convex hull holds
    the point (0: none): a network drops the pixels right under a negative click and may keep
    the rest of that object around the hole or bite, while a neighbour beside the click (whose
    hull does not reach it) is another object."""
    if labels[y, x] or reach < 1:
        return int(labels[y, x])
    r = int(np.ceil(reach))
    y0, x0 = max(0, y - r), max(0, x - r)
    window = labels[y0:y + r + 1, x0:x + r + 1]
    ys, xs = np.nonzero(window)
    if not len(ys):
        return 0
    d = np.hypot(ys + y0 - y, xs + x0 - x)
    j = int(np.argmin(d))
    lab = int(window[ys[j], xs[j]])
    if d[j] > reach:
        return 0
    box = _padded(ndimage.find_objects(labels, max_label=lab)[lab - 1], labels.shape, pad=r + 1)
    piece = labels[box] == lab
    return lab if convex_hull_image(piece)[y - box[0].start, x - box[1].start] else 0


def click_instances(mask: np.ndarray, clicks: Clicks, height: float | None, min_area: float,
                    reach: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The proposals the user is shown, and the pixels of those the clicks removed.

    ``split_instances`` of ``mask``; then the last recall click on an instance decides: a
    negative one (on it or within ``reach`` px of it) removes it (returned as the second array,
    for the caller to clear), a positive one keeps it whatever its size; an instance without
    clicks under ``min_area`` px is a speck and is dropped. Ids are consecutive from 1."""
    labels = split_instances(mask, min_size=1, h=height)
    n = int(labels.max())
    if n == 0:
        return labels, np.zeros(mask.shape, bool)
    last = np.zeros(n + 1, np.int8)  # 0: no click, 1: last click positive, -1: negative
    for c in clicks:
        lab = instance_near(labels, *click_pixel(c, mask.shape), 0.0 if c.positive else reach)
        if lab:
            last[lab] = 1 if c.positive else -1
    area = np.bincount(labels.ravel(), minlength=n + 1)
    keep = (last == 1) | ((last == 0) & (area >= min_area))
    keep[0] = False
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1)
    return lut[labels], (last == -1)[labels]


def fix_last_click(prob: np.ndarray, prev_instances: np.ndarray | None, click: Click, height: float | None,
                   expected_area: float, threshold: float) -> tuple[np.ndarray, str]:
    """What the last recall click means, written into the new probability: a negative click on
    a proposal (``prev_instances``: what the user saw) clears that whole proposal ("removed"); a
    positive one inside a proposal cuts the click's object out of the proposal under it
    (``split_off_click``; "split"); a positive one elsewhere is left to the network ("added")."""
    iy, ix = click_pixel(click, prob.shape)
    under = 0 if prev_instances is None else int(prev_instances[iy, ix])
    if not under:
        return prob, "added" if click.positive else ""
    if not click.positive:
        return np.where(prev_instances == under, np.float32(0), prob).astype(np.float32), "removed"
    components, _ = ndimage.label(prob > threshold)
    cid = components[iy, ix]
    if not cid:
        return prob, ""
    box = _padded(ndimage.find_objects(components, max_label=cid)[cid - 1], prob.shape)
    comp = components[box] == cid
    labels = split_instances(comp, min_size=1, h=height)
    cy, cx = iy - box[0].start, ix - box[1].start
    own = split_off_click(labels == labels[cy, cx], cy, cx, expected_area)
    if own is None:
        return prob, ""
    cut = own & ndimage.binary_dilation(comp & ~own, np.ones((3, 3), bool))
    out = prob.copy()
    out[box][cut] = 0.0
    return out, "split"


def _padded(box: tuple[slice, slice], shape: tuple[int, int], pad: int = 1) -> tuple[slice, slice]:
    return tuple(slice(max(0, s.start - pad), min(n, s.stop + pad)) for s, n in zip(box, shape, strict=True))


def split_negative_clicks(negatives: Clicks, same_category: np.ndarray) -> tuple[Clicks, Clicks]:
    """(true, pseudo) negatives: an exemplar negative click on another object of the exemplar's
    category is *pseudo* (it is positive for the recall task) and must not reach the recall
    branch as a negative. ``same_category``: GT of the other instances in training, the current
    recall prediction at inference."""
    true, pseudo = [], []
    h, w = same_category.shape
    for c in negatives:
        y, x = int(round(c.y)), int(round(c.x))
        on_object = 0 <= y < h and 0 <= x < w and bool(same_category[y, x])
        (pseudo if on_object else true).append(c)
    return Clicks(true), Clicks(pseudo)


def local_update(prev_prob: np.ndarray, new_prob: np.ndarray, y: float, x: float,
                 threshold: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """``new_prob`` inside the objects under the click (its connected component in the previous
    and in the new mask), ``prev_prob`` everywhere else: one click fixes the object it is on.
    A line of background that kept two previous objects apart (a split click's cut) is kept."""
    iy, ix = int(round(y)), int(round(x))
    iy, ix = min(max(iy, 0), prev_prob.shape[0] - 1), min(max(ix, 0), prev_prob.shape[1] - 1)
    region = np.zeros(prev_prob.shape, bool)
    prev_components = None
    for prob in (prev_prob, new_prob):
        components, _ = ndimage.label(prob > threshold)
        prev_components = components if prev_components is None else prev_components
        if components[iy, ix]:
            region |= components == components[iy, ix]
    rows, cols = np.nonzero(region.any(axis=1))[0], np.nonzero(region.any(axis=0))[0]
    if len(rows):  # the lines are looked for where the click changes something only
        box = (slice(max(0, rows[0] - 1), rows[-1] + 2), slice(max(0, cols[0] - 1), cols[-1] + 2))
        region[box] &= ~separating_gaps(prev_components[box])
    return np.where(region, new_prob, prev_prob).astype(np.float32)


def drop_committed(instances: np.ndarray, objects: np.ndarray, max_overlap: float = 0.5) -> np.ndarray:
    """Proposals minus what is already committed: instances mostly covered by existing objects
    (e.g. the exemplar itself) are dropped, the rest lose their overlapping pixels."""
    instances = np.asarray(instances)
    taken = objects > 0
    out = np.where(taken, 0, instances).astype(np.int32)
    n = int(instances.max()) if instances.size else 0
    if n == 0:
        return out
    total = np.bincount(instances.ravel(), minlength=n + 1)
    covered = np.bincount(instances[taken].ravel(), minlength=n + 1)
    drop = np.nonzero(covered > max_overlap * np.maximum(total, 1))[0]
    drop = drop[drop > 0]
    if len(drop):
        out[np.isin(out, drop)] = 0
    return out
