#!/bin/sh
# Deploys one JupyterHub release (staging or prod) on the cluster in $KUBECONFIG, with its home
# directories on $NFS_EXPORT and its ingress on $INGRESS_IP. Idempotent: helm upgrade --install.
set -eu
release="$1"
exec helm upgrade --install "hub-$release" jupyterhub/jupyterhub \
  --namespace "$release" --create-namespace \
  --kubeconfig "$KUBECONFIG" \
  --set "proxy.service.loadBalancerIP=$INGRESS_IP" \
  --set "ingress.hosts[0]=$HUB_HOST" \
  --set "singleuser.storage.type=static" \
  --set "singleuser.storage.static.pvcName=home-nfs" \
  --set-string "custom.nfsExport=$NFS_EXPORT/$release" \
  --wait --timeout 20m
