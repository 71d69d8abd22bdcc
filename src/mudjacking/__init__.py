"""mudjacking: patch backdoors out of foundation models from a single bug report.

Liu, Reiter, Gong. "Mudjacking: Patching Backdoor Vulnerabilities in Foundation Models." USENIX Security 2024.
"""

__version__ = "0.1.0"
