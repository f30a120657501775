#!/bin/sh
# Deploys one JupyterHub release (staging or prod) on the cluster in $KUBECONFIG, with its home
# directories on $NFS_EXPORT and its ingress on $INGRESS_IP. Idempotent: helm upgrade --install.
#
# With a static IP that outlives generations (a `static_ip` resource), also set INGRESS_IP_NAME
# and INGRESS_IP_GROUP to its name and resource group: the proxy's Service then asks AKS's
# cloud controller for that very address (the cluster's identity needs the Network Contributor
# role on the group), and takes it as soon as a failover has detached it from the old cluster.
set -eu
release="$1"
set -- --set "proxy.service.loadBalancerIP=$INGRESS_IP"
if [ -n "${INGRESS_IP_NAME:-}" ]; then
  set -- "$@" \
    --set-string "proxy.service.annotations.service\.beta\.kubernetes\.io/azure-pip-name=$INGRESS_IP_NAME" \
    --set-string "proxy.service.annotations.service\.beta\.kubernetes\.io/azure-load-balancer-resource-group=${INGRESS_IP_GROUP:?set INGRESS_IP_GROUP with INGRESS_IP_NAME}"
fi
exec helm upgrade --install "hub-$release" jupyterhub/jupyterhub \
  --namespace "$release" --create-namespace \
  --kubeconfig "$KUBECONFIG" \
  "$@" \
  --set "ingress.hosts[0]=$HUB_HOST" \
  --set "singleuser.storage.type=static" \
  --set "singleuser.storage.static.pvcName=home-nfs" \
  --set-string "custom.nfsExport=$NFS_EXPORT/$release" \
  --wait --timeout 20m
