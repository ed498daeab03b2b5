"""Workflows: the ``AgentWorkflowDto`` schema and its checks, node types, and compiling to
LangGraph.
"""
