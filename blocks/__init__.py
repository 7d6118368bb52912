"""Prefect Blocks: credentials (AWX, GitHub, registry, cluster) and stack targets.

``prefect block register -m blocks`` registers them all.
"""

from blocks.credentials import AwxServer, GitHubAccount, ImageRegistry, KubernetesCluster
from blocks.target import NOTIFIABLE, PRODUCTION_TAG, Budgets, Mode, Source, SourceRepository, StackTarget

__all__ = [
    "NOTIFIABLE",
    "PRODUCTION_TAG",
    "AwxServer",
    "Budgets",
    "GitHubAccount",
    "ImageRegistry",
    "KubernetesCluster",
    "Mode",
    "Source",
    "SourceRepository",
    "StackTarget",
]
