"""Host side of tfdock: the docker client, image builds, GPU requests, mounts and console output.

Shared by tasks.py and noxfile.py. Never imports TensorFlow, and keeps imports cheap so `invoke --list`
stays instant (the docker SDK is imported only when an engine is needed).
"""
