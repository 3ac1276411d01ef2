"""Fast, physics-grounded shower simulation with per-hit truth.

particles/guns (what enters) -> em_shower, hadron_shower, mip (spots along the shower)
-> spots (place on cells, MIP quantisation) -> digitisation (noise, threshold, time)
-> truth (merged truth clusters, per-hit contributors) -> simulator (one event)
-> production (many events, shards, workers).
"""

from caloreco.simulation.guns import PRESETS, DTauConfig, GunConfig, PileupConfig, make_generator
from caloreco.simulation.particles import GenParticles, species
from caloreco.simulation.simulator import SimulationConfig, Simulator

__all__ = ["PRESETS", "DTauConfig", "GenParticles", "GunConfig", "PileupConfig", "SimulationConfig",
           "Simulator", "make_generator", "species"]
