"""ADAGE deployment: staging, transports, satellites, the state machine, generated scripts."""

from adage.deploy.deployer import Deployer, DeployError, Options, Result, deploy

__all__ = ["DeployError", "Deployer", "Options", "Result", "deploy"]
