"""Frame-identity cache of projected image features, so each frame of an episode is encoded once.

NaVILA re-encodes all 8 frames at every model call although 7 of them were seen before. Keys are the hashable
`Image.key`s chosen by the caller, e.g. `(episode_uid, step_index)`; `drop(episode_uid)` forgets an episode when it
ends. The cache is bounded (least recently used entries go first) so a caller that never drops cannot exhaust memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

import torch


class FeatureCache:
    """key -> projected features [T', D] (a tensor on the model's device)."""

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise ValueError(f"FeatureCache.max_entries must be >= 1, got {max_entries}")
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, torch.Tensor] = OrderedDict()
        self.hits = 0  # lookups answered from the cache
        self.misses = 0  # lookups that needed encoding

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> torch.Tensor | None:
        """The cached features of `key` (marked recently used), or None; counts a hit or a miss."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, features: torch.Tensor) -> None:
        """Store `features` (detached) for `key`, evicting the least recently used entries beyond `max_entries`."""
        self._entries[key] = features.detach() if features.requires_grad else features
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def drop(self, prefix: Hashable) -> int:
        """Forget every key whose first element equals `prefix` (or the key itself); returns how many went."""
        doomed = [k for k in self._entries if k == prefix or (isinstance(k, tuple) and k and k[0] == prefix)]
        for key in doomed:
            del self._entries[key]
        return len(doomed)

    def clear(self) -> None:
        """Forget everything (e.g. after the weights changed)."""
        self._entries.clear()
