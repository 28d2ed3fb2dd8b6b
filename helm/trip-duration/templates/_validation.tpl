{{/* Cross-value checks. Each message names the key to set and the fix. */}}
{{- define "td.validate" -}}
{{- $errors := list -}}
{{- if not .Values.s3.bucket -}}
{{- $errors = append $errors "s3.bucket is required: the S3 bucket for code, data and MLflow artifacts (--set s3.bucket=my-bucket)" -}}
{{- end -}}
{{- if eq .Values.apiMode "cloud" -}}
{{- if not .Values.worker.cloud.accountId -}}{{- $errors = append $errors "worker.cloud.accountId is required when apiMode=cloud" -}}{{- end -}}
{{- if not .Values.worker.cloud.workspaceId -}}{{- $errors = append $errors "worker.cloud.workspaceId is required when apiMode=cloud" -}}{{- end -}}
{{- if not .Values.worker.cloud.apiKeySecretName -}}{{- $errors = append $errors "worker.cloud.apiKeySecretName is required when apiMode=cloud: create a Secret with the API key (kubectl create secret generic prefect-cloud --from-literal=api-key=...)" -}}{{- end -}}
{{- end -}}
{{- if and (eq .Values.apiMode "server") (eq .Values.server.database.mode "external") (not .Values.server.database.existingSecret) -}}
{{- $errors = append $errors "server.database.existingSecret is required when server.database.mode=external (Secret keys: host, port, user, password, database)" -}}
{{- end -}}
{{- if and .Values.mlflow.enabled (eq .Values.mlflow.database.mode "external") (not .Values.mlflow.database.existingSecret) -}}
{{- $errors = append $errors "mlflow.database.existingSecret is required when mlflow.database.mode=external (Secret key: uri)" -}}
{{- end -}}
{{- if and (not .Values.worker.gpu.enabled) (not .Values.worker.cpu.enabled) -}}
{{- $errors = append $errors "worker.gpu.enabled and worker.cpu.enabled are both false: no flow run would ever start; enable at least one" -}}
{{- end -}}
{{- if and .Values.notifications.enabled (not .Values.notifications.existingSecret) -}}
{{- $errors = append $errors "notifications.existingSecret is required when notifications.enabled=true: a Secret with the webhook URL (kubectl create secret generic td-alerts --from-literal=url=https://hooks.slack.com/services/...; --set notifications.existingSecret=td-alerts)" -}}
{{- end -}}
{{- /* Credentials: generated ones need `lookup` to survive the next render; given ones must hold their keys. */ -}}
{{- $reachable := include "td.clusterReachable" . -}}
{{- $generated := list -}}
{{- if and (include "td.needsPostgres" .) (not .Values.postgresql.auth.existingSecret) -}}{{- $generated = append $generated "postgresql.auth.existingSecret (key: password)" -}}{{- end -}}
{{- if and (include "td.apiAuthEnabled" .) (not .Values.server.auth.existingSecret) -}}{{- $generated = append $generated (printf "server.auth.existingSecret (key: %s, value user:password)" .Values.server.auth.key) -}}{{- end -}}
{{- if and (include "td.mlflowAuthEnabled" .) (not .Values.mlflow.auth.existingSecret) -}}{{- $generated = append $generated "mlflow.auth.existingSecret (keys: admin-password, trainer-password, reader-password, flask-secret-key)" -}}{{- end -}}
{{- if and $generated (not $reachable) (not .Values.secrets.allowWithoutLookup) -}}
{{- $errors = append $errors (printf "no cluster to look up the passwords generated before (helm template, Argo CD, Flux?): each render would make new ones and break the release. Create the Secrets yourself (Sealed Secrets, External Secrets, kubectl) and set %s; or, only to look at the manifests, --set secrets.allowWithoutLookup=true" (join ", " $generated)) -}}
{{- end -}}
{{- if $reachable -}}
{{- $checks := list -}}
{{- if and (include "td.apiAuthEnabled" .) .Values.server.auth.existingSecret -}}{{- $checks = append $checks (dict "value" "server.auth.existingSecret" "name" .Values.server.auth.existingSecret "keys" (list .Values.server.auth.key) "colon" .Values.server.auth.key) -}}{{- end -}}
{{- if and (include "td.mlflowAuthEnabled" .) .Values.mlflow.auth.existingSecret -}}{{- $checks = append $checks (dict "value" "mlflow.auth.existingSecret" "name" .Values.mlflow.auth.existingSecret "keys" (list "admin-password" "trainer-password" "reader-password" "flask-secret-key") "colon" "") -}}{{- end -}}
{{- if and (include "td.needsPostgres" .) .Values.postgresql.auth.existingSecret -}}{{- $checks = append $checks (dict "value" "postgresql.auth.existingSecret" "name" .Values.postgresql.auth.existingSecret "keys" (list "password") "colon" "") -}}{{- end -}}
{{- if and .Values.notifications.enabled .Values.notifications.existingSecret -}}{{- $checks = append $checks (dict "value" "notifications.existingSecret" "name" .Values.notifications.existingSecret "keys" (list .Values.notifications.key) "colon" "") -}}{{- end -}}
{{- range $c := $checks -}}
{{- $found := lookup "v1" "Secret" $.Release.Namespace $c.name -}}
{{- if not $found -}}
{{- $errors = append $errors (printf "%s: Secret %q does not exist in namespace %s; create it with keys %s" $c.value $c.name $.Release.Namespace (join ", " $c.keys)) -}}
{{- else -}}
{{- range $key := $c.keys -}}
{{- $raw := "" -}}
{{- if and $found.data (hasKey $found.data $key) -}}{{- $raw = index $found.data $key | b64dec -}}{{- end -}}
{{- if not $raw -}}
{{- $errors = append $errors (printf "%s: Secret %q has no key %q (or it is empty); add it: kubectl -n %s create secret generic %s --from-literal=%s=..." $c.value $c.name $key $.Release.Namespace $c.name $key) -}}
{{- else if and (has $key (list "trainer-password" "reader-password")) (lt (len $raw) 24) -}}
{{- $errors = append $errors (printf "%s: key %q of Secret %q is shorter than 24 characters; the flow-run identities need random tokens (openssl rand -hex 24)" $c.value $key $c.name) -}}
{{- else if and (eq $key "admin-password") (lt (len $raw) 12) -}}
{{- $errors = append $errors (printf "%s: key %q of Secret %q is shorter than 12 characters; set a longer password" $c.value $key $c.name) -}}
{{- else if and (eq $key $c.colon) (not (regexMatch "^[^:]+:.+$" $raw)) -}}
{{- $errors = append $errors (printf "%s: key %q of Secret %q must be user:password (found no colon or an empty part)" $c.value $key $c.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $errors -}}
{{- fail (printf "\n\nvalues check failed:\n  - %s" (join "\n  - " $errors)) -}}
{{- end -}}
{{- end -}}
