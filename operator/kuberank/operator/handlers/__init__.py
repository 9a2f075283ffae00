"""kopf handlers: parse, call a reconciler, report. All logic lives below this layer.

Importing this package registers every handler with kopf:
- ``rerankmodel``: reconcile a RerankModel and keep its status following its Deployment and pods;
- ``children``: recreate a deleted child and revert one whose spec someone else edited;
- ``apikey``: mint a key into its Secret, publish its digest, flip it to Expired on time;
- ``scaling``: scale idle models to zero and autoscale on the load gateways report.

Children are watched (indexes + event handlers), never polled per object.
"""

from kuberank.operator.handlers import apikey, children, rerankmodel, scaling

__all__ = ["apikey", "children", "rerankmodel", "scaling"]
