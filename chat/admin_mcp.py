"""Admin of the operator's MCP servers and their tools (imported by ``chat.admin``).

Credentials are write-only: the form has an empty bearer-token field and an empty
headers field, and leaves the stored ones unchanged unless something is typed (or
"clear credentials" is ticked); the page only ever says whether credentials are
set. Saves and actions go through `chat.mcp.services` / `chat.mcp.probe`.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from billing.models import Tier
from chat.mcp import services
from chat.mcp.config import secret_decrypt
from chat.mcp.probe import mcp_server_test
from chat.models import McpServer, McpTool


class McpServerForm(forms.ModelForm[McpServer]):
    url = forms.URLField(required=False, assume_scheme="https", max_length=500, help_text="Streamable HTTP endpoint.")
    bearer_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent as 'Authorization: Bearer …'. Leave empty to keep the stored token; it is never shown again.",
    )
    headers_json = forms.CharField(
        label="Headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Extra HTTP headers as a JSON object, e.g. {"X-Api-Key": "…"}. Leave empty to keep the stored '
        "headers; they are never shown again.",
    )
    env_json = forms.CharField(
        label="Environment",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='stdio: environment variables of the process as a JSON object, e.g. {"API_KEY": "…"}, on top of '
        "HOME, PATH, SHELL, TERM, USER and LOGNAME. Leave empty to keep the stored ones; never shown again.",
    )
    clear_credentials = forms.BooleanField(
        required=False, help_text="Remove the stored token, headers and environment."
    )
    allowed_tiers = forms.MultipleChoiceField(
        choices=Tier.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every tier.",
    )

    class Meta:
        model = McpServer
        fields = ("name", "transport", "url", "command", "enabled", "timeout_s", "allowed_tiers")

    def _strings(self, field: str, what: str) -> dict[str, str] | None:
        text = self.cleaned_data.get(field) or ""
        if not text.strip():
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"{what} are a JSON object of strings.") from exc
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise forms.ValidationError(f"{what} are a JSON object of strings.")
        return value

    def clean_headers_json(self) -> dict[str, str] | None:
        return self._strings("headers_json", "Headers")

    def clean_env_json(self) -> dict[str, str] | None:
        return self._strings("env_json", "Environment variables")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        problems = services.server_config_problems(
            name=data.get("name") or "",
            transport=data.get("transport") or "",
            url=data.get("url") or "",
            command=data.get("command") if data.get("command") is not None else [],
            timeout_s=float(data.get("timeout_s") or 0),
            allowed_tiers=list(data.get("allowed_tiers") or []),
        )
        if problems:
            raise forms.ValidationError(problems)
        return data


class McpToolInline(admin.TabularInline[McpTool, McpServer]):
    model = McpTool
    extra = 0
    can_delete = False
    fields = ("exposed_name", "description", "enabled", "cost_cents", "approval_policy", "is_listed", "refused_reason")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: McpServer | None = None) -> bool:
        return False  # tools come from the server's own list


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin[McpServer]):
    form = McpServerForm
    list_display = ("name", "transport", "enabled", "status", "last_tool_count", "latency", "last_error_short")
    list_filter = ("enabled", "transport")
    search_fields = ("name", "url")
    readonly_fields = (
        "credentials", "last_checked_at", "last_reachable", "last_latency_ms", "last_tool_count", "last_error",
    )  # fmt: skip
    fieldsets = (
        (None, {"fields": ("name", "transport", "url", "command", "enabled", "timeout_s", "allowed_tiers")}),
        (
            "Credentials (write-only)",
            {"fields": ("credentials", "bearer_token", "headers_json", "env_json", "clear_credentials")},
        ),
        ("Status", {"fields": readonly_fields[1:]}),
    )
    inlines = [McpToolInline]
    actions = ["test_connection"]

    @admin.display(description="status")
    def status(self, obj: McpServer) -> str:
        if obj.last_reachable is None:
            return "not checked"
        return format_html('<span style="color:{}">{}</span>', "green" if obj.last_reachable else "red",
                           "reachable" if obj.last_reachable else "unreachable")  # fmt: skip

    @admin.display(description="latency")
    def latency(self, obj: McpServer) -> str:
        return f"{obj.last_latency_ms} ms" if obj.last_latency_ms is not None else "–"

    @admin.display(description="last error")
    def last_error_short(self, obj: McpServer) -> str:
        return obj.last_error[:120]

    @admin.display(description="stored credentials")
    def credentials(self, obj: McpServer) -> str:
        try:
            secret = secret_decrypt(obj.secret_encrypted)
        except Exception:
            return "unreadable (SECRET_KEY changed): enter them again"
        parts = []
        if secret.bearer_token:
            parts.append("a bearer token")
        if secret.headers:
            parts.append(f"{len(secret.headers)} header(s): {', '.join(sorted(secret.headers))}")
        if secret.env:
            parts.append(f"{len(secret.env)} environment variable(s): {', '.join(sorted(secret.env))}")
        return "; ".join(parts) if parts else "none"

    def save_model(self, request: HttpRequest, obj: McpServer, form: Any, change: bool) -> None:
        data = form.cleaned_data
        fields = {
            "name": data["name"],
            "transport": data["transport"],
            "url": data.get("url") or "",
            "command": list(data.get("command") or []),
            "enabled": bool(data.get("enabled")),
            "timeout_s": float(data["timeout_s"]),
            "allowed_tiers": list(data.get("allowed_tiers") or []),
        }
        headers, token, env = data.get("headers_json"), data.get("bearer_token") or None, data.get("env_json")
        if not change:
            created = services.mcp_server_create(
                **fields, headers=headers or {}, bearer_token=token or "", env=env or {}
            )
            obj.pk = created.pk
            obj.refresh_from_db()
            return
        server = services.mcp_server_update(server=McpServer.objects.get(pk=obj.pk), **fields)
        if data.get("clear_credentials"):
            services.mcp_server_secret_set(server=server, headers={}, bearer_token="", env={})
        elif headers is not None or token is not None or env is not None:
            services.mcp_server_secret_set(server=server, headers=headers, bearer_token=token, env=env)
        obj.refresh_from_db()

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        formset.save(commit=False)  # the tool inline is read-only (tools are edited on their own page)

    def response_change(self, request: HttpRequest, obj: McpServer) -> HttpResponse:
        """ "Save and test connection" on the change page: save, test, and stay on the page."""
        if "_test_connection" in request.POST:
            self.test_connection(request, McpServer.objects.filter(pk=obj.pk))
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.action(description="Test connection (list the tools, record the status)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            result = mcp_server_test(server=server)
            if not result.reachable:
                self.message_user(request, f"{server.name}: unreachable — {result.error}", messages.ERROR)
                continue
            tools = ", ".join(result.tool_names) or "no tools"
            summary = f"reachable in {result.latency_ms} ms; {len(result.tool_names)} tool(s): {tools}."
            self.message_user(request, f"{server.name}: {summary}", messages.SUCCESS)
            for refusal in result.refusals:
                self.message_user(request, f"{server.name}: {refusal}", messages.ERROR)


class McpToolForm(forms.ModelForm[McpTool]):
    class Meta:
        model = McpTool
        fields = ("enabled", "cost_cents", "approval_policy")
        help_texts = {
            "approval_policy": "Always: every call waits for the user's Approve / Deny. Never: it runs at once, "
            "unless its price is over the user's own approval threshold.",
        }


@admin.register(McpTool)
class McpToolAdmin(admin.ModelAdmin[McpTool]):
    form = McpToolForm
    list_display = (
        "exposed_name", "server", "enabled", "cost_cents", "approval_policy", "is_listed", "refused_reason",
    )  # fmt: skip
    list_editable = ("enabled", "cost_cents", "approval_policy")
    list_filter = ("server", "enabled", "is_listed")
    list_select_related = ("server",)
    search_fields = ("name", "exposed_name", "description")
    readonly_fields = ("server", "name", "exposed_name", "description", "input_schema", "is_listed", "refused_reason")
    actions = ["enable_tools", "disable_tools"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tools come from the server's own list

    def save_model(self, request: HttpRequest, obj: McpTool, form: Any, change: bool) -> None:
        data = form.cleaned_data
        services.mcp_tool_update(
            tool=McpTool.objects.get(pk=obj.pk),
            enabled=bool(data.get("enabled")),
            cost_cents=int(data.get("cost_cents") or 0),
            approval_policy=str(data.get("approval_policy") or McpTool.ApprovalPolicy.NEVER),
        )
        obj.refresh_from_db()

    @admin.action(description="Enable the selected tools")
    def enable_tools(self, request: HttpRequest, queryset: QuerySet[McpTool]) -> None:
        changed = services.mcp_tools_enable(tools=queryset, enabled=True)
        self.message_user(request, f"{changed} tool(s) enabled.", messages.SUCCESS)

    @admin.action(description="Disable the selected tools")
    def disable_tools(self, request: HttpRequest, queryset: QuerySet[McpTool]) -> None:
        changed = services.mcp_tools_enable(tools=queryset, enabled=False)
        self.message_user(request, f"{changed} tool(s) disabled.", messages.SUCCESS)
