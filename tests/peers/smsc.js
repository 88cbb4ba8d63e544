#!/usr/bin/env node
// A small SMSC on the npm "smpp" package (node-smpp 0.5.1), for mdmd's
// integration tests: a real SMPP implementation written by others.
//
//   node smsc.js [--system-id ID] [--password PW] [--receipts none|tlv|text|both]
//                [--throttle-every N] [--quiet]
//
// Listens on 127.0.0.1, port chosen by the system, and prints one JSON line
// {"port": N}. Then every PDU it receives is one JSON line on stdout:
// {"dir": "in", "command": ..., "sequence_number": ..., "hex": <raw PDU>,
//  "fields": {...node-smpp's own reading...}}; PDUs it sends are logged with
// "dir": "out" (without hex). It checks system_id/password on bind, answers
// submit_sm with a decimal message_id (or ESME_RTHROTTLED every Nth submit),
// sends a delivery receipt after each accepted submit if asked, answers
// enquire_link and unbind, and generic_nacks what it does not know.
// --quiet logs nothing but the port (for benchmarks).
'use strict';

const smpp = require('smpp');

const options = { systemId: 'mdmd', password: 'secret', receipts: 'none', throttleEvery: 0, quiet: false };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const value = argv[i + 1];
  if (argv[i] === '--quiet') {
    options.quiet = true;
    i -= 1;
    continue;
  }
  switch (argv[i]) {
    case '--system-id': options.systemId = value; break;
    case '--password': options.password = value; break;
    case '--receipts': options.receipts = value; break;
    case '--throttle-every': options.throttleEvery = parseInt(value, 10); break;
    default:
      process.stderr.write(`unknown option ${argv[i]}\n`);
      process.exit(2);
  }
}

// Keep the raw bytes of every PDU node-smpp parses, out of its own fields
// (non-enumerable, so node-smpp's "for key in pdu" loops do not see it).
const parse = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
  Object.defineProperty(this, 'rawHex', { value: buffer.toString('hex'), enumerable: false });
  return parse.call(this, buffer);
};

function plain(value) {
  if (Buffer.isBuffer(value)) return { hex: value.toString('hex') };
  if (Array.isArray(value)) return value.map(plain);
  if (value instanceof Date) return value.toISOString();
  if (value && typeof value === 'object') {
    const out = {};
    for (const key of Object.keys(value)) out[key] = plain(value[key]);
    return out;
  }
  return value;
}

function log(dir, pdu) {
  if (options.quiet) return;
  const fields = {};
  for (const key of Object.keys(pdu)) {
    if (!['command', 'command_id', 'command_length', 'command_status', 'sequence_number'].includes(key)) {
      fields[key] = plain(pdu[key]);
    }
  }
  const line = {
    dir,
    command: pdu.command,
    command_status: pdu.command_status,
    sequence_number: pdu.sequence_number,
    fields,
  };
  if (pdu.rawHex !== undefined) line.hex = pdu.rawHex;
  process.stdout.write(JSON.stringify(line) + '\n');
}

let submits = 0;
let messageIds = 0;

const server = smpp.createServer((session) => {
  let bound = false;
  session.on('send', (pdu) => log('out', pdu));
  session.on('error', (error) => process.stderr.write(`session error: ${error}\n`));
  session.on('pdu', (pdu) => {
    log('in', pdu);
    switch (pdu.command) {
      case 'bind_transceiver':
      case 'bind_transmitter': {
        const ok = pdu.system_id === options.systemId && pdu.password === options.password;
        const status = pdu.system_id !== options.systemId ? smpp.ESME_RINVSYSID
          : ok ? smpp.ESME_ROK : smpp.ESME_RINVPASWD;
        bound = ok;
        session.send(pdu.response({ command_status: status, system_id: 'NODESMSC' }));
        break;
      }
      case 'submit_sm': {
        submits += 1;
        if (!bound) {
          session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
        } else if (options.throttleEvery && submits % options.throttleEvery === 0) {
          session.send(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
        } else {
          messageIds += 1;
          const id = String(messageIds);
          session.send(pdu.response({ message_id: id }));
          if (options.receipts !== 'none') sendReceipt(session, pdu, id);
        }
        break;
      }
      case 'enquire_link':
        session.send(pdu.response());
        break;
      case 'unbind':
        session.send(pdu.response(), () => session.close());
        break;
      case 'deliver_sm_resp':
      case 'enquire_link_resp':
      case 'generic_nack':
        break;
      default:
        if (!pdu.isResponse()) {
          session.send(pdu.response({ command_status: smpp.ESME_RINVCMDID }));
        }
    }
  });
});

function sendReceipt(session, submit, id) {
  const receipt = {
    source_addr_ton: submit.dest_addr_ton,
    source_addr_npi: submit.dest_addr_npi,
    source_addr: submit.destination_addr,
    dest_addr_ton: submit.source_addr_ton,
    dest_addr_npi: submit.source_addr_npi,
    destination_addr: submit.source_addr,
    esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
    data_coding: 0,
    short_message: Buffer.alloc(0),
  };
  if (options.receipts === 'tlv' || options.receipts === 'both') {
    receipt.receipted_message_id = id;
    receipt.message_state = smpp.MESSAGE_STATE.DELIVERED;
  }
  if (options.receipts === 'text' || options.receipts === 'both') {
    receipt.short_message = Buffer.from(
      `id:${id} sub:001 dlvrd:001 submit date:2611220101 done date:2611220102 stat:DELIVRD err:000 text:`,
      'ascii');
  }
  session.deliver_sm(receipt);
}

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
