#!/usr/bin/perl
# A second, independent SMSC for mdmd's integration tests, on Debian's
# Net::SMPP (libnet-smpp-perl). Adapted in spirit from the package's
# examples/smsc.pl, which is hard-wired to port 9900, has no authentication
# and serves forever; this one is ours:
#
#   perl smsc.pl [--system-id ID] [--password PW] [--receipts]
#
# Listens on 127.0.0.1, port chosen by the system, prints {"port": N}, serves
# exactly one ESME connection and exits when it ends. Every PDU received is
# one JSON line on stdout: {"dir": "in", "command", "command_status",
# "sequence_number", "hex" (the raw PDU), "fields" (Net::SMPP's reading)}.
# Binds are checked against system_id/password; submit_sm gets a decimal
# message_id and, with --receipts, a text delivery receipt in a deliver_sm;
# enquire_link and unbind are answered; anything else gets generic_nack.
use strict;
use warnings;

use IO::Handle;
use JSON::PP;
use Net::SMPP;

my %opt = (system_id => 'mdmd', password => 'secret', receipts => 0);
while (my $arg = shift @ARGV) {
    if    ($arg eq '--system-id') { $opt{system_id} = shift @ARGV; }
    elsif ($arg eq '--password')  { $opt{password}  = shift @ARGV; }
    elsif ($arg eq '--receipts')  { $opt{receipts}  = 1; }
    else                          { die "unknown option $arg\n"; }
}

STDOUT->autoflush(1);
my $json = JSON::PP->new->canonical;

my $listener = Net::SMPP->new_listen('127.0.0.1', port => 0, smpp_version => 0x34)
    or die "cannot listen: $!\n";
print $json->encode({port => $listener->sockport}), "\n";

my $conn = $listener->accept or die "accept failed: $!\n";
close $listener;

my %names = map { $_ => Net::SMPP::pdu_tab->{$_}{cmd} } keys %{Net::SMPP::pdu_tab()};
my @logged_fields = qw(system_id password system_type interface_version addr_ton addr_npi
    service_type source_addr_ton source_addr_npi source_addr dest_addr_ton dest_addr_npi
    destination_addr esm_class registered_delivery data_coding message_id);

my ($bound, $message_ids) = (0, 0);
while (my $pdu = $conn->read_pdu()) {
    my $name = $names{$pdu->{cmd}} // sprintf('0x%08x', $pdu->{cmd});
    my $raw = pack('NNNN', 16 + length($pdu->{data}), $pdu->{cmd}, $pdu->{status}, $pdu->{seq})
        . $pdu->{data};
    my %fields = map { defined $pdu->{$_} ? ($_ => $pdu->{$_}) : () } @logged_fields;
    $fields{short_message} = unpack('H*', $pdu->{short_message}) if defined $pdu->{short_message};
    print $json->encode({
        dir => 'in', command => $name, command_status => $pdu->{status},
        sequence_number => $pdu->{seq}, hex => unpack('H*', $raw), fields => \%fields,
    }), "\n";

    if ($name eq 'bind_transceiver' or $name eq 'bind_transmitter') {
        my $status = $pdu->{system_id} ne $opt{system_id} ? 0x0F
                   : $pdu->{password} ne $opt{password}   ? 0x0E : 0;
        $bound = $status == 0;
        my $respond = $name eq 'bind_transceiver' ? 'bind_transceiver_resp' : 'bind_transmitter_resp';
        $conn->$respond(system_id => 'PERLSMSC', seq => $pdu->{seq}, status => $status);
    } elsif ($name eq 'submit_sm') {
        if (!$bound) {
            $conn->submit_sm_resp(message_id => '', seq => $pdu->{seq}, status => 0x04);
            next;
        }
        my $id = ++$message_ids;
        $conn->submit_sm_resp(message_id => "$id", seq => $pdu->{seq});
        if ($opt{receipts}) {
            $conn->deliver_sm(
                source_addr_ton => $pdu->{dest_addr_ton},
                source_addr_npi => $pdu->{dest_addr_npi},
                source_addr => $pdu->{destination_addr},
                dest_addr_ton => $pdu->{source_addr_ton},
                dest_addr_npi => $pdu->{source_addr_npi},
                destination_addr => $pdu->{source_addr},
                esm_class => 0x04,
                data_coding => 0,
                short_message => "id:$id sub:001 dlvrd:001 submit date:2611220101 "
                    . "done date:261122010203 stat:DELIVRD err:000 text:",
                async => 1,
            );
        }
    } elsif ($name eq 'enquire_link') {
        $conn->enquire_link_resp(seq => $pdu->{seq});
    } elsif ($name eq 'unbind') {
        $conn->unbind_resp(seq => $pdu->{seq});
        last;
    } elsif ($pdu->{cmd} & 0x80000000) {
        next;    # responses (deliver_sm_resp, ...) need no answer
    } else {
        $conn->generic_nack(seq => $pdu->{seq}, status => 0x03);
    }
}
close $conn;
