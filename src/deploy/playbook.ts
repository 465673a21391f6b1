/**
 * The Ansible playbook `fedsim deploy ansible` writes (docs/multi-host.md). It is the same
 * for every run: what differs (token, chunks, binary, paths, timeouts) is in the fedsim.yml
 * written beside it. Knobs a host may set in the inventory are read with `default()`, since
 * vars_files would outrank the inventory.
 *
 * Each process is started in a session of its own (`setsid`), and writes its own pid (the
 * session and process group) to NAME.pid before it execs fedsim; the cleanup signals those
 * groups, TERM then KILL after fedsim_stop_timeout seconds. Every wait is bounded, and the
 * cleanup runs in `always`, after a failed step too.
 */
export const PLAYBOOK = String.raw`# fedsim: one run across hosts, written by "fedsim deploy ansible" (docs/multi-host.md):
#
#   ansible-playbook -i INVENTORY playbook.yml
#
# Groups: coordinator (one host), server (one host), workers (their chunks are fedsim_chunk_plan
# in fedsim.yml). Inventory variables: fedsim_control_port (7070), fedsim_listen_host (0.0.0.0)
# and fedsim_coordinator_address (ansible_host) on the coordinator host; fedsim_http_port (7071),
# fedsim_grpc_port (7072), fedsim_bind (0.0.0.0) and fedsim_advertise on the server host;
# fedsim_isolated on worker hosts of their own; fedsim_remote_root, fedsim_keep_binary and
# fedsim_become anywhere.
- name: fedsim run {{ fedsim_name }}
  hosts: coordinator:server:workers
  gather_facts: false
  become: "{{ fedsim_become | default(fedsim_kernel_faults) | bool }}"
  vars_files:
    - fedsim.yml
  vars:
    _root: "{{ fedsim_remote_root | default('/tmp/fedsim-' ~ fedsim_run_id) }}"
    _dir: "{{ _root }}/{{ inventory_hostname }}"
    _coord: "{{ groups['coordinator'][0] }}"
    _control_port: "{{ hostvars[_coord].fedsim_control_port | default(7070) }}"
    _coordinator_address: "{{ hostvars[_coord].fedsim_coordinator_address | default(hostvars[_coord].ansible_host | default(_coord)) }}:{{ _control_port }}"
    _env:
      FEDSIM_TOKEN: "{{ fedsim_token }}"
      XDG_CACHE_HOME: "{{ _dir }}/cache"
  tasks:
    - name: run fedsim, then clean up
      block:
        - name: clear the results of an earlier run of this playbook
          ansible.builtin.file:
            path: "{{ fedsim_out }}/run"
            state: absent
          delegate_to: localhost
          run_once: true
          become: false

        - name: make the working directory
          ansible.builtin.file:
            path: "{{ item }}"
            state: directory
            mode: "0700"
          loop:
            - "{{ _dir }}"
            - "{{ _dir }}/logs"

        - name: copy the fedsim binary
          ansible.builtin.copy:
            src: "{{ fedsim_binary }}"
            dest: "{{ _dir }}/fedsim"
            mode: "0755"

        - name: copy the scenario to the coordinator
          ansible.builtin.copy:
            src: scenario.yaml
            dest: "{{ _dir }}/scenario.yaml"
            mode: "0600"
          when: inventory_hostname in groups['coordinator']

        # The log starts with a line of its own: wait_for's search_regex fails on an empty file (Ansible 2.14).
        - name: start the coordinator
          ansible.builtin.shell: >-
            echo "fedsim deploy: starting the coordinator" > logs/coordinator.log;
            setsid /bin/sh -c 'echo $$ > coordinator.pid; "$0" "$@"; echo $? > coordinator.rc'
            ./fedsim coordinator --listen {{ ((fedsim_listen_host | default('0.0.0.0')) ~ ':' ~ _control_port) | quote }}
            --scenario scenario.yaml --out run --headless
            >> logs/coordinator.log 2>&1 < /dev/null &
          args:
            chdir: "{{ _dir }}"
          environment: "{{ _env }}"
          when: inventory_hostname in groups['coordinator']

        - name: wait until the coordinator listens
          ansible.builtin.wait_for:
            path: "{{ _dir }}/logs/coordinator.log"
            search_regex: '"event":"listening"'
            timeout: "{{ fedsim_start_timeout }}"
          when: inventory_hostname in groups['coordinator']

        - name: start the server node
          ansible.builtin.shell: >-
            setsid /bin/sh -c 'echo $$ > server.pid; exec "$0" "$@"'
            ./fedsim node --role server --coordinator {{ _coordinator_address | quote }}
            --host {{ fedsim_bind | default('0.0.0.0') | quote }}
            --http-port {{ fedsim_http_port | default(7071) | int }} --grpc-port {{ fedsim_grpc_port | default(7072) | int }}
            {{ ('--advertise ' ~ (fedsim_advertise | quote)) if fedsim_advertise is defined else '' }}
            > logs/server.log 2>&1 < /dev/null &
          args:
            chdir: "{{ _dir }}"
          environment: "{{ _env }}"
          when: inventory_hostname in groups['server']

        - name: start the worker nodes
          ansible.builtin.shell: >-
            setsid /bin/sh -c 'echo $$ > worker-{{ item }}.pid; exec "$0" "$@"'
            ./fedsim node --role worker --coordinator {{ _coordinator_address | quote }}
            --chunk {{ (item ~ ' of ' ~ fedsim_nodes) | quote }}
            {{ '--isolated' if (fedsim_isolated | default(false) | bool) else '' }}
            > logs/worker-{{ item }}.log 2>&1 < /dev/null &
          args:
            chdir: "{{ _dir }}"
          environment: "{{ _env }}"
          loop: "{{ fedsim_chunk_plan[inventory_hostname] | default([]) }}"

        - name: wait for the end of the run
          ansible.builtin.wait_for:
            path: "{{ _dir }}/coordinator.rc"
            timeout: "{{ fedsim_run_timeout }}"
          when: inventory_hostname in groups['coordinator']

        - name: read the coordinator's exit code
          ansible.builtin.slurp:
            src: "{{ _dir }}/coordinator.rc"
          register: _rc
          when: inventory_hostname in groups['coordinator']

      always:
        - name: stop every fedsim process this play started
          ansible.builtin.shell: |
            cd {{ _dir | quote }} 2>/dev/null || exit 0
            pids=
            for f in *.pid; do [ -f "$f" ] && pids="$pids $(cat "$f")"; done
            alive() { for p in $pids; do kill -0 -"$p" 2>/dev/null && return 0; done; return 1; }
            alive || exit 0
            for p in $pids; do kill -TERM -"$p" 2>/dev/null; done
            i=0
            while alive && [ "$i" -lt {{ (fedsim_stop_timeout | int) * 5 }} ]; do sleep 0.2; i=$((i + 1)); done
            if alive; then for p in $pids; do kill -KILL -"$p" 2>/dev/null; done; echo "killed:$pids"; fi
            echo "stopped:$pids"
          register: _stop
          changed_when: "'stopped' in _stop.stdout"

        - name: list the run directory
          ansible.builtin.find:
            paths: "{{ _dir }}/run"
            recurse: true
          register: _run_files
          when: inventory_hostname in groups['coordinator']

        - name: fetch the run directory
          ansible.builtin.fetch:
            src: "{{ item.path }}"
            dest: "{{ fedsim_out }}/run/{{ item.path | relpath(_dir ~ '/run') }}"
            flat: true
          loop: "{{ _run_files.files | default([]) }}"
          loop_control:
            label: "{{ item.path | basename }}"
          when: inventory_hostname in groups['coordinator']

        - name: list the node logs
          ansible.builtin.find:
            paths: "{{ _dir }}/logs"
            patterns: "*.log"
          register: _logs

        - name: fetch the node logs
          ansible.builtin.fetch:
            src: "{{ item.path }}"
            dest: "{{ fedsim_out }}/run/logs/{{ item.path | basename }}"
            flat: true
          loop: "{{ _logs.files | default([]) }}"
          loop_control:
            label: "{{ item.path | basename }}"

        - name: remove the working directory
          ansible.builtin.file:
            path: "{{ _dir }}"
            state: absent
          when: not (fedsim_keep_binary | default(false) | bool)

        - name: remove the working directory but the binary
          ansible.builtin.shell: find {{ _dir | quote }} -mindepth 1 -maxdepth 1 ! -name fedsim -exec rm -rf {} +
          when: fedsim_keep_binary | default(false) | bool

        - name: remove the run's directory once it is empty
          ansible.builtin.command: rmdir {{ _root | quote }}
          register: _rmdir
          failed_when: false
          changed_when: _rmdir.rc == 0
          when: not (fedsim_keep_binary | default(false) | bool)

    - name: the coordinator's last lines
      ansible.builtin.debug:
        msg: "{{ (lookup('ansible.builtin.file', fedsim_out ~ '/run/logs/coordinator.log', errors='ignore') or '').splitlines()[-14:] }}"
      when: inventory_hostname in groups['coordinator']

    - name: the run passed
      ansible.builtin.assert:
        that: (_rc.content | b64decode | trim | int) == 0
        fail_msg: "fedsim coordinator exited with code {{ _rc.content | b64decode | trim }} (1 failed, 99 thresholds): see {{ fedsim_out }}/run/logs/coordinator.log"
        success_msg: "fedsim run {{ fedsim_name }} passed; its run directory is {{ fedsim_out }}/run"
      when: inventory_hostname in groups['coordinator']
`;
